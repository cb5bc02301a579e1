"""``python -m lockyard.bench``: see :mod:`lockyard.bench.cli`."""

from lockyard.bench.cli import main

raise SystemExit(main())
