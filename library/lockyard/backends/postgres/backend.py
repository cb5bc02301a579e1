"""The PostgreSQL backend as a whole: a pool, a store and a lock manager over it, the LISTEN
connection and the background sweep; :func:`open_backend` builds one from a config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import fields
from typing import cast

import asyncpg

from lockyard.config import PostgresConfig
from lockyard.errors import StateError
from lockyard.guarantees import Guarantees

from . import sql
from .errors import BACKEND_NAME, runner
from .fenced import PostgresFencedWrites
from .lean_pool import LeanPool
from .locks import PostgresLocks
from .migrations import SETUP_TIMEOUT_S, migrate_connection, require_schema
from .permits import PostgresPermits, permit_managers
from .pool import StatementPool, close_pool, create_pool
from .signals import ReleaseListener, release_channel
from .sql.fenced import FencedStatements, render_fenced
from .sql.permits import PermitStatements, render_permits
from .store import PostgresStateStore
from .tls import connect, connect_kwargs

log = logging.getLogger(__name__)

#: Pause between two rounds of the background sweep (expired entries, abandoned queue entries).
SWEEP_INTERVAL_S = 2.0

GUARANTEES = Guarantees(
    mutual_exclusion=(
        "across processes and hosts: a committed row lease judged by the database clock"
    ),
    failover_safety=(
        "durable: leases survive client and server restarts; a failover keeps them when the "
        "replica had them (synchronous replication)"
    ),
    fencing="per-name counter in the lease row, kept after release: strictly increasing",
    ttl_precision="1 ms",
    clock="the PostgreSQL server's clock (clock_timestamp())",
    fifo_waiters=True,
)


class PostgresBackend:
    """A pool, a store and a lock manager over it, the LISTEN connection and the sweeper."""

    name = BACKEND_NAME
    guarantees = GUARANTEES

    def __init__(self, config: PostgresConfig, pool: LeanPool) -> None:
        self.config = config
        self.pool = pool
        self.db = StatementPool(pool)
        self._run = runner(config)
        statements = sql.render(config.schema_name)
        self.store = PostgresStateStore(self._run, self.db, statements, config.prefix)
        listen_kwargs = connect_kwargs(config, "lockyard-listen")
        self.listener = ReleaseListener(
            lambda: connect(listen_kwargs),
            release_channel(config.schema_name, config.prefix),
        )
        self.locks = PostgresLocks(self._run, self.db, statements, config.prefix, self.listener)
        permit_statements = render_permits(config.schema_name)
        self.semaphores, self.rwlocks = permit_managers(
            self._run, self.db, permit_statements, config.prefix, self.listener
        )
        fenced = render_fenced(config.schema_name)
        self.store.fenced_writes = PostgresFencedWrites(self.db, fenced, config.prefix)
        self.db.name_statements(_statement_names(statements, permit_statements, fenced))
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lockyard-pg-sweep")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(random.uniform(0.75, 1.25) * SWEEP_INTERVAL_S)
            try:
                await self.store.sweep_expired()
                await self.locks.sweep_waiters()
                await cast(PostgresPermits, self.semaphores.table).sweep()
            except StateError as exc:  # the server is away: the next round tries again
                log.debug("lockyard: postgresql sweep failed: %s", exc)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._run("ping", self.db.fetchval(sql.PING))
        return time.perf_counter() - started

    async def server_version(self) -> str:
        version: str = await self._run("server_version", self.db.fetchval(sql.SERVER_VERSION))
        return f"PostgreSQL {version}"

    async def close(self) -> None:
        self._run.close()
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self.listener.close()
        await close_pool(self.pool, self.config.operation_timeout)


def _statement_names(
    statements: sql.Statements, permits: PermitStatements, fenced: FencedStatements
) -> dict[str, str]:
    """Each statement's text and the operation it serves (for error messages)."""
    names = {getattr(statements, f.name): f.name.rstrip("_") for f in fields(statements)}
    names |= {getattr(permits, f.name): f"permit_{f.name}" for f in fields(permits)}
    names |= {text: f"fenced {operation}" for (_, operation), text in fenced.by_kind.items()}
    return names


async def open_backend(config: PostgresConfig) -> PostgresBackend:
    """Open the pool, migrate the schema (or check it, with ``migrate=false``), start helpers."""
    setup = runner(config, max(SETUP_TIMEOUT_S, config.operation_timeout))
    pool = create_pool(config)
    try:

        async def prepare(connection: asyncpg.Connection) -> None:
            if config.migrate:
                await migrate_connection(connection, config.schema_name)
            else:
                await require_schema(connection, config)

        await setup(
            "migrate" if config.migrate else "check_schema", StatementPool(pool).run(prepare)
        )
    except BaseException:
        await close_pool(pool, config.operation_timeout)
        raise
    return PostgresBackend(config, pool)
