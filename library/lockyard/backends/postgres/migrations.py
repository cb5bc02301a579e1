"""Creating and upgrading the PostgreSQL backend's schema (the SQL is in :mod:`.sql.schema`).

What ``lockyard migrate URL`` runs (:func:`migrate`), and what opening a backend does unless
the URL says ``migrate=false`` (then :func:`require_schema` only checks the version).
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from lockyard.config import PostgresConfig, to_url
from lockyard.errors import ConfigError

from . import sql
from .errors import runner
from .tls import connect, connect_kwargs

#: Migrations and the first connection may take longer than one operation.
SETUP_TIMEOUT_S = 60.0


async def schema_version(connection: asyncpg.Connection, schema: str) -> int:
    """The schema's migration version; 0 when it has none (or does not exist)."""
    table = f"{sql.quote_schema(schema)}.schema_version"
    if await connection.fetchval(sql.VERSION_TABLE_EXISTS, table) is None:
        return 0
    version: int = await connection.fetchval(sql.CURRENT_VERSION.format(s=sql.quote_schema(schema)))
    return version


async def migrate_connection(
    connection: asyncpg.Connection, schema: str, progress: Callable[[str], None] | None = None
) -> int:
    """Bring ``schema`` up to :data:`~.sql.LATEST_VERSION` on ``connection``.

    Idempotent and safe to run from many processes at once: the work happens in one transaction
    that first takes a transaction-scoped advisory lock for the schema, then re-reads the
    version, so a second migrator waits and then finds nothing to do. Returns the version.
    """
    say = progress or (lambda _message: None)
    current = await schema_version(connection, schema)
    if current >= sql.LATEST_VERSION:
        say(f"schema {schema} is at version {current}: up to date")
        return current
    statements = sql.render(schema)
    async with connection.transaction():
        await connection.execute(f"SET LOCAL statement_timeout = {round(SETUP_TIMEOUT_S * 1000)}")
        await connection.execute(sql.MIGRATION_LOCK, f"lockyard.migrate:{schema}")
        await connection.execute(statements.create_version_table)
        current = await connection.fetchval(statements.current_version)
        for migration in sql.MIGRATIONS:
            if migration.version <= current:
                continue
            say(f"schema {schema}: applying version {migration.version}: {migration.description}")
            for statement in sql.migration_statements(schema, migration):
                await connection.execute(statement)
            await connection.execute(
                statements.record_version, migration.version, migration.description
            )
            current = migration.version
    say(f"schema {schema} is at version {current}")
    return int(current)


async def migrate(config: PostgresConfig, progress: Callable[[str], None] | None = None) -> int:
    """Create or upgrade the schema of ``config`` on its own connection; returns the version.

    What ``lockyard migrate URL`` runs, and what ``connect`` does unless ``migrate=false``.
    """
    run = runner(config, SETUP_TIMEOUT_S)

    async def _migrate() -> int:
        connection = await connect(connect_kwargs(config, "lockyard-migrate"))
        try:
            return await migrate_connection(connection, config.schema_name, progress)
        finally:
            await connection.close()

    return await run("migrate", _migrate())


async def require_schema(connection: asyncpg.Connection, config: PostgresConfig) -> None:
    """``ConfigError`` (saying how to migrate) unless the schema is at the latest version."""
    version = await schema_version(connection, config.schema_name)
    if version < sql.LATEST_VERSION:
        state = "does not exist" if version == 0 else f"is at version {version}"
        raise ConfigError(
            f"the Lockyard schema {config.schema_name!r} {state} (this lockyard needs version "
            f"{sql.LATEST_VERSION}) and the URL says migrate=false: run "
            f"`lockyard migrate {to_url(config, with_password=False)}` first, "
            "or connect with migrate=true"
        )
