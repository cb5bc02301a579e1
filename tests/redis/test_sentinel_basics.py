"""Sentinel specifics that need no failover: discovery, wait_replicas, a replica's READONLY."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import lockyard
from lockyard import BackendConnectionError, BackendError
from lockyard.backends.redis import FENCING_EPOCH_SHIFT, RedisBackend
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.process import free_port
from lockyard_dev.servers.redis import RedisSentinelSetup, TLSFiles

pytestmark = pytest.mark.sentinel


async def test_the_master_is_discovered_and_the_epoch_is_in_the_token(
    redis_sentinel: RedisSentinelSetup,
) -> None:
    async with lockyard.connect(redis_sentinel.url(unique_prefix())) as ly:
        assert ly.backend == "redis-sentinel"
        assert "failover" in ly.guarantees.failover_safety
        backend = ly._backend
        assert isinstance(backend, RedisBackend)
        assert backend.sentinel_watch is not None
        epoch = redis_sentinel.config_epoch()
        guard = await ly.locks.try_acquire("epoch", 5)
        assert guard is not None
        assert guard.fencing_token == epoch << FENCING_EPOCH_SHIFT | 1
        await guard.release()
        await ly.store.set("ns:acme:state:where", "master")
        _, port = redis_sentinel.master_address()
        with redis_sentinel.server_on(port).admin() as admin:
            key = f"lockyard:{{{ly.prefix}|state}}:d:ns:acme:state:where"
            assert admin.hget(key, "v") == "master"
        await ly.store.purge()


async def test_an_unreachable_sentinel_is_named_by_its_address_the_same_each_time() -> None:
    # The operator writes a store's status when its message changes: a message naming
    # objects by memory address (redis-py's repr of its client) rewrote it on every probe.
    port = free_port()
    url = f"redis+sentinel://127.0.0.1:{port}/mymaster?prefix={unique_prefix()}&timeout=2"
    messages = []
    for _ in range(2):
        with pytest.raises(BackendConnectionError) as raised:
            async with lockyard.connect(url) as ly:
                await ly.store.get("ns:t:state:k")
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert f"No master found for 'mymaster' : 127.0.0.1:{port}: " in messages[0]
    assert " at 0x" not in messages[0]


async def test_wait_replicas_confirms_or_gives_the_lock_back(
    redis_sentinel: RedisSentinelSetup,
) -> None:
    prefix = unique_prefix()
    async with lockyard.connect(redis_sentinel.url(prefix, wait_replicas="1")) as ly:
        guard = await ly.locks.acquire("replicated", 5, timeout=1)
        replica = redis_sentinel.replicas[0]
        with replica.admin() as admin:
            # WAIT returned after the replica acknowledged: the lease is already there.
            assert admin.get(f"lockyard:{{{prefix}|lock:replicated}}:lease") == guard.owner
        await guard.release()
    async with lockyard.connect(redis_sentinel.url(prefix, wait_replicas="2", timeout="0.4")) as ly:
        with pytest.raises(BackendError, match="replicas confirmed"):
            await ly.locks.try_acquire("replicated", 5)
        assert await ly.locks.list_held() == []  # given back
        await ly.store.purge()


async def test_writes_to_a_replica_are_connection_errors(
    redis_sentinel: RedisSentinelSetup,
) -> None:
    replica = redis_sentinel.replicas[0]
    url = replica.url(unique_prefix())
    async with lockyard.connect(url) as ly:  # a plain redis:// URL that points at a replica
        assert await ly.store.get("ns:acme:state:x") is None  # reads work
        with pytest.raises(BackendConnectionError, match="read-only replica"):
            await ly.store.set("ns:acme:state:x", "v")
        with pytest.raises(BackendConnectionError):
            await ly.locks.try_acquire("on-a-replica", 5)


@pytest.fixture(scope="module")
def tls_sentinel(
    redis_tls: TLSFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisSentinelSetup]:
    """Sentinels, master and replica all serving TLS only."""
    folder = tmp_path_factory.mktemp("tls-sentinel")
    with RedisSentinelSetup(folder, password="tls-pass", tls=redis_tls) as setup:
        yield setup


async def test_rediss_sentinel_end_to_end(tls_sentinel: RedisSentinelSetup) -> None:
    url = tls_sentinel.url(unique_prefix())
    assert url.startswith("rediss+sentinel://")
    async with lockyard.connect(url) as ly:
        assert ly.backend == "redis-sentinel"
        assert await ly.store.increment("ns:acme:counter:tls", 2) == 2
        holder = await ly.locks.acquire("tls-sentinel", 30, timeout=1)

        async def release_soon() -> None:
            await asyncio.sleep(0.1)
            await holder.release()

        task = asyncio.create_task(release_soon())
        waiter = await ly.locks.acquire("tls-sentinel", 5, timeout=5)
        await task
        assert waiter.fencing_token == holder.fencing_token + 1
        await waiter.release()
        await ly.store.purge()
