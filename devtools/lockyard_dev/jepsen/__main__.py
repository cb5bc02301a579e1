"""``python -m lockyard_dev.jepsen``: see :mod:`lockyard_dev.jepsen.cli`."""

from lockyard_dev.jepsen.cli import main

raise SystemExit(main())
