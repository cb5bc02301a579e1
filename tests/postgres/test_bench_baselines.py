"""The benchmark's raw PostgreSQL baselines return what the Lockyard reads they pair with do.

A baseline that returned fewer rows (or none) would make Lockyard look slow for nothing, so
each many-row baseline is checked to return exactly the rows its Lockyard read returns.
"""

from __future__ import annotations

import pytest

import lockyard
from lockyard.config import PostgresConfig, parse_url
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.bench.baselines import MANY_ROW_CALLS, RAW_MATCHES, PostgresRaw
from lockyard_dev.bench.store_ops import SCAN_MATCHES
from lockyard_dev.servers.postgres import PostgresServer


@pytest.mark.asyncio
async def test_many_row_baselines_return_the_same_number_of_rows(
    postgres_server: PostgresServer,
) -> None:
    assert RAW_MATCHES == SCAN_MATCHES  # what Lockyard's scans return in the benchmark
    config = parse_url(postgres_server.url(prefix=unique_prefix()))
    assert isinstance(config, PostgresConfig)
    # The baseline runs on the table the benchmark's Lockyard connection has migrated.
    async with lockyard.connect(config):
        raw = PostgresRaw(config)
        await raw.prepare()
        try:
            await _check(raw)
        finally:
            await raw.close()


async def _check(raw: PostgresRaw) -> None:
    for op, call in MANY_ROW_CALLS.items():
        assert raw.call_for(op) == call
        rows = await raw.op(call)(0, 0)
        assert isinstance(rows, list)
        assert len(rows) == RAW_MATCHES, f"{call} returned {len(rows)} rows"
    point = await raw.op(raw.call_for("get"))(0, 0)
    assert point is not None
