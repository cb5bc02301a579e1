"""``python -m lockyard_dev.demo``: see :mod:`lockyard_dev.demo.run`."""

from lockyard_dev.demo.run import main

raise SystemExit(main())
