"""The durable-write floor of a PostgreSQL lock cycle, measured on the benchmark's servers.

A lock cycle commits twice: the acquisition, which must wait for its WAL flush, and the release,
which need not (docs/backends/postgres.md, *Durability*). The floor is what the plainest
statements making those commits cost on one connection: a prepared single-row upsert of a
lease row in Lockyard's ``locks`` table (pgbench-style), timed with ``synchronous_commit`` on
(``upsert_sync_per_s``) and off (``upsert_async_per_s``):

- ``ops_per_s``: one flushed and one unflushed commit per cycle, ``1 / (1/sync + 1/async)``;
- ``two_flush_per_s``: two flushed commits per cycle (``sync / 2``), the floor of a cycle whose
  release also waits for its flush (Lockyard's cycle before releases stopped waiting);
- ``statements_per_s``: Lockyard's own two statements of an uncontended cycle (the light
  acquisition and the release, :mod:`lockyard.backends.postgres.sql`) prepared and called raw on
  one connection: what the SQL costs against the floor, and, against Lockyard's cycle, what the
  library's layers cost.

It is measured twice per pass: on the benchmark's server, whose ``fsync=off`` keeps the WAL
write of a flushed commit but not its disk sync (subject :data:`FLOOR`), and on a second server
with ``fsync=on``, where a flush reaches the disk as in production (:data:`DURABLE_FLOOR`,
:mod:`.durable`). Records: section ``floor``, that subject, op ``lock_cycle``, mode
``uncontended``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lockyard.config import PostgresConfig
from lockyard_dev.bench.results import Record, Results
from lockyard_dev.bench.stats import OPS_PER_S, P50_MS, Op, time_sequential, warm_up

FLOOR = "upsert floor, fsync=off"
DURABLE_FLOOR = "upsert floor, fsync=on"
#: $1 prefix, $2 name, $3 owner: takes the lease row as an acquisition does, in one upsert.
UPSERT = """
INSERT INTO {s}.locks AS l (prefix, name, owner, expires_at, fencing)
VALUES ($1, $2, $3, clock_timestamp() + interval '30 seconds', 1)
ON CONFLICT (prefix, name) DO UPDATE
SET owner = excluded.owner, expires_at = excluded.expires_at, fencing = l.fencing + 1"""


async def _sequential_rate(
    config: PostgresConfig,
    prepare: Callable[[Any], Awaitable[Op]],
    n: int,
    max_seconds: float,
    synchronous_commit: str | None = None,
) -> float:
    """Operations per second of ``await prepare(connection)``'s operation, run one after another
    on a connection of its own (``synchronous_commit``: that session setting, if given)."""
    import asyncpg

    from lockyard.backends.postgres import connect_kwargs

    kwargs = connect_kwargs(config, "lockyard-bench-floor")
    if synchronous_commit is not None:
        kwargs["server_settings"] = {
            **kwargs["server_settings"],
            "synchronous_commit": synchronous_commit,
        }
    connection: Any = await asyncpg.connect(**kwargs)
    try:
        op = await prepare(connection)
        await warm_up(op, 50)
        sample = await time_sequential(op, n, max_seconds)
        return sample.figures()[OPS_PER_S]
    finally:
        await connection.close()


async def _upsert_rate(
    config: PostgresConfig, prefix: str, synchronous: bool, n: int, max_seconds: float
) -> float:
    from lockyard.backends.postgres import quote_schema

    async def prepare(connection: Any) -> Op:
        statement = await connection.prepare(UPSERT.format(s=quote_schema(config.schema_name)))

        async def upsert(i: int, task: int) -> object:
            return await statement.fetch(prefix, "floor", f"o{i}")

        return upsert

    setting = "on" if synchronous else "off"
    return await _sequential_rate(config, prepare, n, max_seconds, synchronous_commit=setting)


async def _statement_cycle_rate(
    config: PostgresConfig, prefix: str, n: int, max_seconds: float
) -> float:
    from lockyard.backends.postgres.sql import render

    statements = render(config.schema_name)

    async def prepare(connection: Any) -> Op:
        acquire = await connection.prepare(statements.acquire_unqueued)
        release = await connection.prepare(statements.release)

        async def cycle(i: int, task: int) -> object:
            owner = f"o{i}"
            await acquire.fetchval(prefix, "statements", owner, 30_000)
            # Nobody waits: the release notifies no channel and wakes no client.
            return await release.fetchrow(prefix, "statements", owner, "bench_floor", "bench")

        return cycle

    return await _sequential_rate(config, prepare, n, max_seconds)


async def measure_floor(
    results: Results,
    config: PostgresConfig,
    pass_no: int,
    iterations: int,
    max_seconds: float,
    subject: str = FLOOR,
) -> None:
    """One pass: the upsert rate with and without the flush, and the floors they give."""
    import asyncpg

    from lockyard.backends.postgres import connect_kwargs, quote_schema

    prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
    n = max(iterations, 500)
    try:
        flushed = await _upsert_rate(config, prefix, True, n, max_seconds)
        unflushed = await _upsert_rate(config, prefix, False, n, max_seconds)
        statements = await _statement_cycle_rate(config, prefix, n, max_seconds)
    finally:
        connection: Any = await asyncpg.connect(**connect_kwargs(config, "lockyard-bench-floor"))
        try:
            schema = quote_schema(config.schema_name)
            for table in ("locks", "lock_waiters"):
                await connection.execute(f"DELETE FROM {schema}.{table} WHERE prefix = $1", prefix)
        finally:
            await connection.close()
    floor = 1 / (1 / flushed + 1 / unflushed)
    metrics = {
        OPS_PER_S: floor,
        P50_MS: 1000 / floor,
        "upsert_sync_per_s": flushed,
        "upsert_async_per_s": unflushed,
        "two_flush_per_s": flushed / 2,
        "statements_per_s": statements,
    }
    results.add(
        Record(config.backend, "floor", subject, "lock_cycle", "uncontended", pass_no, metrics)
    )
