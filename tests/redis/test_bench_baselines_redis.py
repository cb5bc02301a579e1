"""The benchmark's raw Redis clients connect as Lockyard's own connections do, and run.

A raw baseline set up otherwise measures the difference, not the library: a socket timeout
alone makes redis-py wrap every send in ``asyncio.wait_for`` and every read in a timeout, about
a quarter of a GET on this machine, and Lockyard sets none. So each raw client takes Lockyard's
connection settings (``connection_kwargs``), and each raw call it pairs with a Lockyard operation
runs on a real server under its own client name.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from lockyard.backends.redis.pool import connection_kwargs
from lockyard.config import RedisClusterConfig, RedisConfig, parse_url
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.bench.baselines import (
    RAW_CLIENT_NAME,
    RAW_MATCHES,
    REDIS_MANY_ROW_CALLS,
    RedisClusterRaw,
    RedisRaw,
    redis_client_like_lockyards,
)
from lockyard_dev.bench.store_ops import SCAN_MATCHES, STORE_OP_NAMES
from lockyard_dev.bench.throughput import THROUGHPUT_OPS, RedisPool
from lockyard_dev.servers.redis import RedisServer
from lockyard_dev.servers.redis_cluster import RedisClusterSetup


def _redis_config(server: RedisServer) -> RedisConfig:
    config = parse_url(server.url(prefix=unique_prefix()))
    assert isinstance(config, RedisConfig)
    return config


async def _client_names(server: RedisServer | RedisClusterSetup) -> set[str]:
    """The names of the clients connected to ``server`` (the first node of a cluster)."""
    config = parse_url(server.url())
    if isinstance(config, RedisClusterConfig):
        node = config.nodes[0]
        host, port = node.host, node.port
    else:
        assert isinstance(config, RedisConfig)
        host, port = config.host, config.port
    password = None if config.password is None else config.password.get_secret_value()
    admin = Redis(host=host, port=port, username=config.username, password=password)
    try:
        return {str(client["name"]) for client in await admin.client_list()}
    finally:
        await admin.aclose()


@pytest.mark.asyncio
async def test_the_raw_client_has_lockyards_connection_settings(redis_server: RedisServer) -> None:
    config = _redis_config(redis_server)
    client: Any = redis_client_like_lockyards(config, "raw-under-test")
    try:
        assert await client.ping()
        settings = client.connection_pool.connection_kwargs
        lockyards = connection_kwargs(config)
        for key, value in lockyards.items():
            if key == "retry":  # an object per client: compare what it does
                assert settings[key].get_retries() == value.get_retries() == 0
            elif key != "client_name":
                assert settings[key] == value, key
        assert settings["socket_timeout"] is None
        assert client.connection_pool.max_connections == config.pool_size
        assert "raw-under-test" in await _client_names(redis_server)
    finally:
        await client.aclose()


async def _run_every_store_call(raw: RedisRaw, server: RedisServer | RedisClusterSetup) -> None:
    await raw.prepare()
    try:
        for i, op in enumerate(STORE_OP_NAMES):
            await raw.op(raw.call_for(op))(i, 0)
        assert await raw.op("GET")(0, 0) == "x" * 32
        assert RAW_CLIENT_NAME in await _client_names(server)
    finally:
        await raw.close()


@pytest.mark.asyncio
async def test_every_raw_store_call_runs_under_the_raw_client_name(
    redis_server: RedisServer,
) -> None:
    await _run_every_store_call(RedisRaw(_redis_config(redis_server)), redis_server)


@pytest.mark.asyncio
async def test_the_many_record_reads_return_as_many_records_as_lockyards(
    redis_server: RedisServer,
) -> None:
    """Scans and due reads are paired with raw reads of as many records (over a sorted-set
    index, as Lockyard's are), not with a one-key call; and the raw keys go with ``close()``."""
    with redis_server.admin() as admin:
        before = set(admin.keys("lockyard-bench-raw-*"))
    raw = RedisRaw(_redis_config(redis_server))
    await raw.prepare()
    try:
        assert RAW_MATCHES == SCAN_MATCHES
        for op, call in REDIS_MANY_ROW_CALLS.items():
            assert raw.call_for(op) == call
        scanned = [
            await raw.op(raw.call_for(op))(0, 0) for op in ("scan_keys", "scan_keys_by_kind")
        ]
        for found in scanned:
            assert isinstance(found, list)
            members, values = found[0::2], found[1::2]
            assert members == [f"item-{i:03d}" for i in range(RAW_MATCHES)]
            assert values == ["x" * 32] * RAW_MATCHES
        due = await raw.op(raw.call_for("get_expired_timeouts"))(0, 0)
        assert isinstance(due, list)
        assert sorted(due) == [f"due-{i:03d}" for i in range(RAW_MATCHES)]
    finally:
        await raw.close()
    with redis_server.admin() as admin:
        assert set(admin.keys("lockyard-bench-raw-*")) == before


@pytest.mark.asyncio
async def test_the_compare_and_swap_baseline_is_a_write_that_swaps_every_time(
    redis_server: RedisServer,
) -> None:
    """Paired with a versioned compare-and-set script (a write, as Lockyard's is), which passes
    each task's current version as Lockyard's benchmark does: every call swaps."""
    raw = RedisRaw(_redis_config(redis_server))
    await raw.prepare()
    try:
        cas = raw.op(raw.call_for("compare_and_swap"))
        assert [await cas(i, task) for i in range(3) for task in (0, 1)] == [1] * 6
    finally:
        await raw.close()


@pytest.mark.asyncio
async def test_the_throughput_pool_runs_each_operation(redis_server: RedisServer) -> None:
    pool = RedisPool(_redis_config(redis_server))
    await pool.prepare()
    try:
        for op in THROUGHPUT_OPS:
            call = pool.op(op, "test")
            assert call is not None
            await call(0, 0)
        # lock_cycle's release found its own token: the lock is gone again.
        lock_cycle = pool.op("lock_cycle", "again")
        assert lock_cycle is not None
        assert await lock_cycle(1, 0) == 1
        assert "lockyard-bench-tp-raw" in await _client_names(redis_server)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_the_raw_cluster_client_runs_every_store_call(
    redis_cluster: RedisClusterSetup,
) -> None:
    config = parse_url(redis_cluster.url(prefix=unique_prefix()))
    assert isinstance(config, RedisClusterConfig)
    await _run_every_store_call(RedisClusterRaw(config), redis_cluster)
