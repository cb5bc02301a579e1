"""``python -m lockyard_dev.chaos``: see :mod:`lockyard_dev.chaos.cli`."""

from lockyard_dev.chaos.cli import main

raise SystemExit(main())
