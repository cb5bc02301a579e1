"""``python -m lockyard_dev.bench``: see :mod:`lockyard_dev.bench.cli`."""

from lockyard_dev.bench.cli import main

raise SystemExit(main())
