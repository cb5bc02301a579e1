"""One client cut off from Redis by toxiproxy while another goes on.

The cut-off client holds a lock with ``hold()``. Its renewals can no longer reach the server, so
``hold()`` must give the lock up (cancel the block) no later than the TTL after its last
confirmed lease began; the other client gets the lock only once that lease has ended, with a
higher fencing token. After the partition heals (toxiproxy dropped everything sent meanwhile
and closes the connections it cut), the cut-off client, like a paused process waking up, still
has its old guard: its fenced write must be refused by the resource and its release must report
the lock lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import lockyard
from lockyard import BackendConnectionError, LockExpiredError, LockLostError, StateStore
from lockyard_dev.jepsen.toxiproxy import Toxiproxy
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL_S = 1.0
OPERATION_TIMEOUT_S = 0.5
OTHER_TIMEOUT_S = 5.0
OTHER_TTL_S = 30.0
#: Redis rounds nothing (milliseconds in, milliseconds out); this covers clock reads.
EPSILON_S = 0.005


async def fenced_write(store: StateStore, key: str, token: int, writer: str) -> str:
    """Write ``token`` to the resource unless it holds a higher one: "written", "refused" or
    "conflict" (someone wrote in between)."""
    found = await store.get_versioned(key)
    if found is not None and int(found[0].split(":", 1)[0]) > token:
        return "refused"
    value = f"{token}:{writer}"
    if found is None:
        return "written" if await store.check_and_set(key, value) else "conflict"
    result = await store.compare_and_swap(key, found[1], value)
    return "written" if result.ok else "conflict"


async def stale_write(store: StateStore, key: str, token: int) -> str:
    """The cut-off client's fenced write after the heal. toxiproxy closes the connections it
    had cut when the partition heals, and a pooled connection's first use after that may fail
    with ``BackendConnectionError``; trying again is safe: a write that landed would show."""
    for attempt in range(3):
        try:
            return await fenced_write(store, key, token, "a")
        except BackendConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def test_a_cut_off_holder_gives_up_in_time_and_its_stale_write_is_refused(
    redis_server: RedisServer, toxiproxy: Toxiproxy
) -> None:
    run = uuid.uuid4().hex[:8]
    proxy = toxiproxy.create_proxy(f"cutoff-{run}", redis_server.port)
    query = f"prefix=cut{run}&timeout={OPERATION_TIMEOUT_S:g}"
    # The other client is never cut off: it gets a timeout and a lease that a loaded machine's
    # pauses cannot outlast (its release once timed out at 0.5 s beside two CPU hogs).
    other_query = f"prefix=cut{run}&timeout={OTHER_TIMEOUT_S:g}"
    lock, resource = "cut-off", f"jp:{run}:fence:cut-off"
    async with (
        lockyard.connect(f"redis://127.0.0.1:{proxy.listen_port}/0?{query}") as cut_off,
        lockyard.connect(f"redis://127.0.0.1:{redis_server.port}/0?{other_query}") as other,
    ):
        lost_at = lease_start = 0.0
        with pytest.raises(LockLostError):
            async with cut_off.locks.hold(lock, TTL_S) as guard:
                assert await fenced_write(cut_off.store, resource, guard.fencing_token, "a") == (
                    "written"
                )
                await asyncio.sleep(TTL_S / 2)  # past the first renewal (every TTL/3)
                for stream in ("upstream", "downstream"):
                    toxiproxy.add_toxic(
                        proxy.name, f"cut-{stream}", "timeout", {"timeout": 0}, stream=stream
                    )
                try:
                    await asyncio.sleep(10 * TTL_S)  # hold() must cancel this
                except asyncio.CancelledError:
                    lost_at = time.monotonic()
                    lease_start = guard.lease_deadline - TTL_S
                    raise
        stale_token = guard.fencing_token
        assert 0 < lost_at - lease_start <= TTL_S

        taker = await other.locks.acquire(lock, OTHER_TTL_S, timeout=5 * TTL_S)
        taken_at = time.monotonic()
        assert taken_at >= lease_start + TTL_S - EPSILON_S
        assert taker.fencing_token > stale_token
        assert await fenced_write(other.store, resource, taker.fencing_token, "b") == "written"

        toxiproxy.reset()  # the partition heals
        assert await stale_write(cut_off.store, resource, stale_token) == "refused"
        with pytest.raises(LockExpiredError):
            try:
                await guard.release()
            except BackendConnectionError:  # a connection closed at the heal, as above
                await guard.release()
        assert await taker.is_held()
        await taker.release()
        assert await other.store.get(resource) == f"{taker.fencing_token}:b"
    toxiproxy.delete_proxy(proxy.name)
