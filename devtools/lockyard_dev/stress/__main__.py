"""``python -m lockyard_dev.stress``: see :mod:`lockyard_dev.stress.cli`."""

from lockyard_dev.stress.cli import main

raise SystemExit(main())
