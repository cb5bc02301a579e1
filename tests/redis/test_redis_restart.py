"""A server restart costs each handle at most one failed operation, whatever the scheduling.

Once a connection is found dead (pooled or auto-pipelined), every connection opened before it is
retired (``lockyard.backends.redis.generations``): re-opened when next used instead of failing
one operation each. The restarts here happen while the event loop is blocked, so no
socket's end has been processed when the handles carry on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis import exceptions as rx
from redis.asyncio import Redis
from redis_helpers import backend_of

import lockyard
from lockyard import BackendConnectionError, LockExpiredError, StateError
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

POOL_SIZE = 8
HANDLES = 4
#: How long the handles run before and after the restart (generous for a loaded machine).
BEFORE_S = 0.5
AFTER_S = 1.0


async def test_a_pooled_connection_found_dead_retires_every_connection_opened_before_it(
    redis_server: RedisServer,
) -> None:
    """One failed command, then only pooled connections opened after it.

    The server drops one pooled connection (what pipelines and ``WAIT`` check out) while the
    others stay up; the command that gets it fails, and no later command runs on a connection
    opened before that failure (without the retiring, the pool would hand the older ones out
    again).
    """
    url = redis_server.url(unique_prefix(), pool_size=str(POOL_SIZE))
    async with lockyard.connect(url) as ly:
        # A client that checks its connections out of the handle's pool, as pipelines do.
        pooled = Redis(connection_pool=backend_of(ly).client.connection_pool)
        # Overlapping commands: each checks out its own connection, so every one is opened.
        opened = set(await asyncio.gather(*(pooled.client_id() for _ in range(POOL_SIZE))))
        assert len(opened) == POOL_SIZE
        # The connection just returned is the one the pool hands out next (last in, first out).
        doomed = await pooled.client_id()
        with redis_server.admin() as admin:  # synchronous: the loop cannot see the socket end
            assert admin.client_kill_filter(_id=doomed) == 1
        with pytest.raises(rx.ConnectionError):
            await pooled.get("ns:acme:state:k")
        after = {await pooled.client_id() for _ in range(POOL_SIZE)}
        after |= set(await asyncio.gather(*(pooled.client_id() for _ in range(POOL_SIZE))))
        assert not after & opened
        assert await ly.store.get("ns:acme:state:k") is None


async def test_a_pipelined_connection_found_dead_fails_once_and_retires_the_pool(
    redis_server: RedisServer,
) -> None:
    """The auto-pipelined connection dies: one operation fails, the next runs on a new
    connection, and the pooled connections opened before are retired too."""
    url = redis_server.url(unique_prefix(), pool_size=str(POOL_SIZE))
    async with lockyard.connect(url) as ly:
        client = backend_of(ly).client
        pooled = Redis(connection_pool=client.connection_pool)
        opened = set(await asyncio.gather(*(pooled.client_id() for _ in range(POOL_SIZE))))
        doomed = await client.client_id()  # the store's commands share this connection
        assert doomed not in opened
        with redis_server.admin() as admin:
            assert admin.client_kill_filter(_id=doomed) == 1
        with pytest.raises(BackendConnectionError):
            await ly.store.get("ns:acme:state:k")
        assert await ly.store.get("ns:acme:state:k") is None
        assert await client.client_id() != doomed
        after = set(await asyncio.gather(*(pooled.client_id() for _ in range(POOL_SIZE))))
        assert not after & opened


@dataclass
class Tally:
    """What one handle's stream of operations saw."""

    done: int = 0
    done_before_restart: int = 0
    failures: list[StateError] = field(default_factory=list)
    lost_leases: int = 0


async def _operate(ly: lockyard.Connection, index: int, tally: Tally, stop: asyncio.Event) -> None:
    """One caller's operations, one at a time: store writes and reads, and a contended lock."""
    store, locks = ly.store, ly.locks
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: store.increment(f"ns:acme:counter:h{index}", 1),
        lambda: store.set(f"ns:acme:state:h{index}", "v", ttl=30),
        lambda: store.get(f"ns:acme:state:h{index}"),
        lambda: store.scan_keys_by_kind("state"),
    ]
    turn = 0
    while not stop.is_set():
        turn += 1
        try:
            await operations[turn % len(operations)]()
            # Every handle contends for one lock: waiters queue, and are signalled by pub/sub.
            guard = await locks.acquire("shared", 5, timeout=5)
            tally.done += 1
            try:
                await guard.release()
            except LockExpiredError:
                tally.lost_leases += 1  # the restarted server forgot the lease: not a failure
            tally.done += 1
        except StateError as exc:  # the restart's, or anything else that went wrong
            tally.failures.append(exc)
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_a_restart_under_concurrent_operations_fails_each_handle_at_most_once(
    own_redis_server: RedisServer, how: str
) -> None:
    server = own_redis_server
    prefix = unique_prefix()
    url = server.url(prefix, pool_size=str(POOL_SIZE), timeout="3")
    handles = [await lockyard.connect(url) for _ in range(HANDLES)]
    try:
        for ly in handles:
            # Every pooled connection of every handle is open when the server goes away.
            await asyncio.gather(*(ly.store.get("ns:acme:state:warm") for _ in range(POOL_SIZE)))
        tallies = [Tally() for _ in handles]
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(_operate(ly, i, tallies[i], stop)) for i, ly in enumerate(handles)
        ]
        await asyncio.sleep(BEFORE_S)
        for tally in tallies:
            tally.done_before_restart = tally.done
        # Blocking the loop: every handle carries on with sockets whose end it has not seen.
        started = time.monotonic()
        server.kill() if how == "kill" else server.stop()
        server.start()
        restart_s = time.monotonic() - started
        await asyncio.sleep(AFTER_S)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 10)
        print(
            f"\n[{how}] restart blocked the loop {restart_s * 1000:.0f} ms; per handle "
            "(operations before, after, failures, leases the restart lost): "
            + ", ".join(
                f"({t.done_before_restart}, {t.done - t.done_before_restart}, "
                f"{len(t.failures)}, {t.lost_leases})"
                for t in tallies
            )
        )
        for tally in tallies:
            assert tally.done_before_restart > 0, "the handles did not run before the restart"
            assert tally.done > tally.done_before_restart, "no progress after the restart"
            assert len(tally.failures) <= 1, tally.failures
    finally:
        for ly in handles:
            await ly.close()
