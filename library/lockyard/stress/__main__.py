"""``python -m lockyard.stress``: see :mod:`lockyard.stress.cli`."""

from lockyard.stress.cli import main

raise SystemExit(main())
