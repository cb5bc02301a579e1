"""``python -m lockyard.chaos``: see :mod:`lockyard.chaos.cli`."""

from lockyard.chaos.cli import main

raise SystemExit(main())
