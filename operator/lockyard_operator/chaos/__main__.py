"""``python -m lockyard_operator.chaos``: see :mod:`lockyard_operator.chaos.cli`."""

from lockyard_operator.chaos.cli import main

raise SystemExit(main())
