"""The benchmark's fenced-write probe runs on Redis Cluster.

A fenced write checks its guard's lease in the same script, so on a cluster the lease and the
record must share a slot: the probe writes the keys of one ``{group}`` under a lock named with
``colocated_name``. Without that, every pass of ``make bench`` reported ``FenceSlotError``
instead of a figure (the report's notes of 2026-12-05).
"""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.bench.fenced import measure
from lockyard_dev.servers.redis_cluster import RedisClusterSetup


@pytest.mark.asyncio
async def test_the_fenced_probe_measures_every_write_on_a_cluster(
    redis_cluster: RedisClusterSetup,
) -> None:
    async with lockyard.connect(redis_cluster.url(prefix=unique_prefix())) as ly:
        try:
            metrics = await measure(ly, samples=10)
        finally:
            await ly.store.purge()
    for kind in ("set", "increment", "compare_and_swap"):
        assert metrics[f"{kind}_fenced_p50_ms"] > 0
        assert metrics[f"{kind}_plain_p50_ms"] > 0
        assert metrics[f"{kind}_ratio_p50"] > 0
