"""Redis lock queue specifics: where waiters live, how long, and what a release publishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.crc import key_slot
from redis_helpers import backend_of, fresh_connection

import lockyard
from lockyard.backends.redis import KeyLayout
from lockyard.locks import DEFAULT_WAITER_LEASE_S, parse_release_signal
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def ly(redis_server: RedisServer) -> AsyncIterator[lockyard.Connection]:
    async with fresh_connection(redis_server.url(unique_prefix())) as connection:
        yield connection


def test_a_locks_keys_share_one_hash_slot() -> None:
    layout = KeyLayout("p")
    for name in ["job", "lock}with{braces", "{x}", "a:b:c", "ünïcode"]:
        keys = layout.lock_keys(name)
        assert keys[0] == layout.lease(name)
        assert keys[1] == layout.fence(name)
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys


async def test_waiters_are_queued_in_order_and_their_keys_expire(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    _, fence, queue, waiters = backend_of(ly).layout.lock_keys("q")
    holder = await ly.locks.acquire("q", 30, timeout=1)
    first = asyncio.create_task(ly.locks.acquire("q", 30, timeout=10))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(ly.locks.acquire("q", 30, timeout=10))
    await asyncio.sleep(0.1)
    with redis_server.admin() as admin:
        queued = admin.zrange(queue, 0, -1, withscores=True)
        assert [score for _, score in queued] == [1.0, 2.0]  # tickets from the fence hash
        assert admin.hget(fence, "q") == "2"
        assert set(admin.hkeys(waiters)) == {owner for owner, _ in queued}
        for key in (queue, waiters):
            assert 0 < admin.pttl(key) <= DEFAULT_WAITER_LEASE_S * 1000
    await holder.release()
    guard = await first
    assert guard.owner == queued[0][0]
    await guard.release()
    await (await second).release()
    with redis_server.admin() as admin:
        assert admin.zcard(queue) == 0
        assert admin.hlen(waiters) == 0


async def test_release_publishes_only_a_next_owner_in_another_client(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    channel = backend_of(ly).layout.release_channel
    async with (
        Redis(port=redis_server.port, decode_responses=True) as client,
        lockyard.connect(redis_server.url(ly.prefix)) as peer,  # another client
    ):
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        try:

            async def next_message(timeout: float = 5) -> str | None:
                try:
                    async with asyncio.timeout(timeout):
                        while True:
                            message = await pubsub.get_message(
                                ignore_subscribe_messages=True, timeout=timeout
                            )
                            if message is not None:
                                return str(message["data"])
                except TimeoutError:
                    return None

            name = "odd\nname"  # names may contain newlines: the owner follows the last one
            alone = await ly.locks.acquire(name, 30, timeout=1)
            await alone.release()  # nobody waits: nothing is published
            holder = await peer.locks.acquire(name, 30, timeout=1)
            waiter = asyncio.create_task(ly.locks.acquire(name, 30, timeout=10))
            await asyncio.sleep(0.1)
            await holder.release()  # the next owner waits in another client: published
            guard = await waiter
            payload = await next_message()
            assert payload is not None
            assert parse_release_signal(payload) == (name, guard.owner)
            local = asyncio.create_task(ly.locks.acquire(name, 30, timeout=10))
            await asyncio.sleep(0.1)
            await guard.release()  # the next owner waits here: woken directly
            await (await local).release()
            assert await next_message(0.2) is None
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
