"""The benchmark's durable floor runs on a server whose commits really reach the disk.

The benchmark's own PostgreSQL runs with ``fsync=off`` (a flush there writes the WAL, without the
disk sync), so the floor of a durable lock cycle is also measured on a second server started
with ``fsync=on`` (lockyard_dev.bench.durable): this checks that server's settings and that a
pass of the floor on it records what the goal reads, leaving no row behind.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from lockyard.backends.postgres import connect_kwargs, quote_schema
from lockyard_dev.bench.durable import durable_target
from lockyard_dev.bench.floor import DURABLE_FLOOR, measure_floor
from lockyard_dev.bench.results import Results
from lockyard_dev.bench.stats import OPS_PER_S

pytestmark = pytest.mark.postgres


@pytest.mark.asyncio
async def test_the_durable_floor_is_measured_on_a_server_that_syncs_to_disk() -> None:
    async with durable_target() as target:
        connection: Any = await asyncpg.connect(**connect_kwargs(target.config, "test"))
        try:
            assert await connection.fetchval("SHOW fsync") == "on"
            assert await connection.fetchval("SHOW synchronous_commit") == "on"
            results = Results({}, {})
            await measure_floor(results, target.config, 0, 50, 10.0, DURABLE_FLOOR)
            (record,) = results.records
            assert (record.section, record.subject, record.op, record.mode) == (
                "floor",
                DURABLE_FLOOR,
                "lock_cycle",
                "uncontended",
            )
            metrics = record.metrics
            flushed, unflushed = metrics["upsert_sync_per_s"], metrics["upsert_async_per_s"]
            assert flushed > 0
            assert unflushed > 0
            assert metrics["statements_per_s"] > 0
            assert metrics[OPS_PER_S] == pytest.approx(1 / (1 / flushed + 1 / unflushed))
            assert metrics["two_flush_per_s"] == pytest.approx(flushed / 2)
            schema = quote_schema(target.config.schema_name)
            for table in ("locks", "lock_waiters"):
                left = await connection.fetchval(
                    f"SELECT count(*) FROM {schema}.{table} WHERE prefix LIKE 'bench-floor-%'"
                )
                assert left == 0, f"the floor left {left} rows in {table}"
        finally:
            await connection.close()
