"""A PostgreSQL server whose commits reach the disk, for the durable floor (:mod:`.floor`).

The benchmark's own server runs with ``fsync=off`` (:mod:`lockyard_dev.servers.postgres`): a
commit that waits for its flush still writes its WAL, but the disk sync is skipped, so waiting for
the flush costs next to nothing there, and neither the floor of a durable cycle nor what a
release saves by not waiting for its flush (docs/backends/postgres.md, *Durability*) shows.
``durable_target()`` starts a second server for the run with ``fsync=on``, the production
setting, and yields a Lockyard connection to it under a private prefix. Each pass then measures,
back to back on it, the upsert floor (:data:`.floor.DURABLE_FLOOR`) and Lockyard's uncontended
cycle (:data:`DURABLE_LOCKYARD`); a flush costs whatever this machine's disk takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import lockyard
from lockyard.config import PostgresConfig, parse_url
from lockyard.connection import Connection

#: Lockyard's uncontended lock cycle on the durable server (section ``floor``).
DURABLE_LOCKYARD = "lockyard, fsync=on"


@dataclass(frozen=True)
class DurableTarget:
    config: PostgresConfig
    connection: Connection


@contextlib.asynccontextmanager
async def durable_target() -> AsyncIterator[DurableTarget]:
    """A server with ``fsync=on`` started for the run, and a connection to it; both go after."""
    from lockyard_dev.servers.postgres import PostgresServer

    server = PostgresServer(settings={"fsync": "on"})
    try:
        await asyncio.to_thread(server.start)
        parsed = parse_url(server.url(sslmode="disable"))
        assert isinstance(parsed, PostgresConfig)
        config = parsed.model_copy(update={"prefix": f"bench-durable-{uuid.uuid4().hex[:8]}"})
        async with lockyard.connect(config) as connection:
            yield DurableTarget(config, connection)
    finally:
        # The whole server goes, data folder and all: nothing to purge.
        await asyncio.to_thread(server.close)
