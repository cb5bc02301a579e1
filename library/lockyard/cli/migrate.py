"""``lockyard migrate URL``: create or upgrade a backend's schema, printing what it does.

Only PostgreSQL has a schema; for the other backends there is nothing to do and the command says
so. Running it twice, or from several processes at once, is safe (see
:func:`lockyard.backends.postgres.migrate`). Exit codes: 0 done, 1 error, 2 bad URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from lockyard.errors import ConfigError, StateError


def run_migrate(url: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Migrate the schema behind ``url``; prints progress and returns the exit code."""
    # Imported here: every `lockyard` command builds this parser, few run it (pydantic models).
    from lockyard.config import PostgresConfig, parse_url, redact

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = parse_url(url)
    except ConfigError as exc:
        print(f"lockyard migrate: {exc}", file=err)
        return 2
    if not isinstance(config, PostgresConfig):
        print(f"lockyard migrate: the {config.backend} backend has no schema to migrate", file=out)
        return 0
    try:
        from lockyard.backends.postgres import migrate
    except ModuleNotFoundError as exc:
        print(
            f"lockyard migrate: needs the Python package {exc.name!r}: "
            "pip install 'lockyard[postgres]'",
            file=err,
        )
        return 1

    def progress(message: str) -> None:
        print(f"lockyard migrate: {message}", file=out, flush=True)

    progress(f"connecting to {redact(url)}")
    try:
        version = asyncio.run(migrate(config, progress))
    except StateError as exc:
        print(f"lockyard migrate: failed: {exc}", file=err)
        return 1
    progress(f"done: schema {config.schema_name} is at version {version}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``migrate URL`` to the ``lockyard`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "migrate",
        help="create or upgrade a backend's schema (PostgreSQL)",
        description="Create or upgrade the schema behind URL; safe to run twice or in parallel.",
    )
    parser.add_argument("url", metavar="URL", help="connection URL, e.g. postgresql://...")
    parser.set_defaults(handler=lambda args: run_migrate(args.url))
