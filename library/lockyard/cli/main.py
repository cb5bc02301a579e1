"""``lockyard`` (and ``kubectl lockyard``): inspect locks and stores, run migrations.

Each subcommand lives in its own module exposing ``register(subparsers)``; this module only
assembles them and reports a ``CliError`` a handler raises. Exit codes follow kubectl: 0
success, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lockyard import __version__
from lockyard.cli._output import CliError, fail

#: Subcommand modules, imported lazily so one missing extra does not break the others.
SUBCOMMANDS = (
    "lockyard.cli.locks",
    "lockyard.cli.elections",
    "lockyard.cli.stores",
    "lockyard.cli.migrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockyard",
        description="Inspect Lockyard locks and StateStores; run backend migrations.",
    )
    parser.add_argument("--version", action="version", version=f"lockyard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
