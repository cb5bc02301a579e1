"""A server that goes away: errors come at once, and the same handle works once it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

import lockyard
from lockyard import BackendConnectionError, StateError
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

#: Generous for a loaded 2-core machine; a refused connection normally fails in ~1 ms.
FAST_S = 0.5


async def _fails_fast(operation: Callable[[], Awaitable[object]]) -> float:
    started = time.monotonic()
    with pytest.raises(BackendConnectionError):
        await operation()
    return time.monotonic() - started


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_outage_errors_fast_and_recovers_after_restart(
    own_redis_server: RedisServer, how: str
) -> None:
    server = own_redis_server
    async with lockyard.connect(server.url(unique_prefix(), timeout="2")) as ly:
        store, locks = ly.store, ly.locks
        await store.set("ns:acme:state:k", "before")
        holder = await locks.acquire("outage", 30, timeout=1)
        waiter = asyncio.create_task(locks.acquire("outage", 30, timeout=20))
        await asyncio.sleep(0.1)  # the waiter is subscribed and sleeping

        server.kill() if how == "kill" else server.stop()
        # The waiter re-attempts when its subscription drops, and reports the outage.
        started = time.monotonic()
        with pytest.raises(BackendConnectionError):
            await waiter
        waiter_s = time.monotonic() - started
        timings = {
            "get": await _fails_fast(lambda: store.get("ns:acme:state:k")),
            "set": await _fails_fast(lambda: store.set("ns:acme:state:k", "during")),
            "increment": await _fails_fast(lambda: store.increment("ns:acme:counter:c", 1)),
            "scan": await _fails_fast(lambda: store.scan_keys_by_kind("state")),
            "try_acquire": await _fails_fast(lambda: locks.try_acquire("other", 5)),
            "acquire": await _fails_fast(lambda: locks.acquire("other", 5, timeout=10)),
            "release": await _fails_fast(holder.release),
            "ping": await _fails_fast(ly.ping),
        }
        print(f"\n[{how}] waiter woke with the error after {waiter_s * 1000:.0f} ms; errors:")
        print("  " + ", ".join(f"{name} {s * 1000:.1f} ms" for name, s in timings.items()))
        assert max(timings.values()) < FAST_S
        assert waiter_s < 2.5

        server.start()
        restarted = time.monotonic()
        # No reconnect code: the next operation on the same handle succeeds.
        assert await store.get("ns:acme:state:k") is None  # the test server keeps no data
        first_ok_s = time.monotonic() - restarted
        await store.set("ns:acme:state:k", "after")
        assert await store.get_versioned("ns:acme:state:k") == ("after", 1)
        again = await locks.acquire("outage", 5, timeout=1)
        second = asyncio.create_task(locks.acquire("outage", 5, timeout=5))
        await asyncio.sleep(0.05)
        released_at = time.monotonic()
        await again.release()
        taken = await second
        handover_s = time.monotonic() - released_at
        print(
            f"[{how}] first operation after restart succeeded in {first_ok_s * 1000:.1f} ms; "
            f"lock handover over the re-made subscription {handover_s * 1000:.1f} ms"
        )
        assert handover_s < 0.6  # signal, or the polling cap if the re-subscription lags
        await taken.release()
        await store.purge()


async def test_connect_to_a_server_that_is_down_fails_fast(own_redis_server: RedisServer) -> None:
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(BackendConnectionError):
        await lockyard.connect(own_redis_server.url(unique_prefix()))
    assert time.monotonic() - started < FAST_S


async def test_a_workload_through_a_restart_sees_only_state_errors(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    async with lockyard.connect(server.url(unique_prefix(), timeout="1")) as ly:
        errors: list[BaseException] = []
        done = 0
        stop = asyncio.Event()

        async def worker(i: int) -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    await ly.store.increment(f"ns:acme:counter:w{i}", 1)
                    async with await ly.locks.acquire(f"w{i % 3}", 5, timeout=1):
                        await ly.store.get(f"ns:acme:counter:w{i}")
                    done += 1
                except StateError as exc:
                    errors.append(exc)
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(worker(i)) for i in range(8)]
        await asyncio.sleep(0.3)
        server.stop()
        await asyncio.sleep(0.5)
        server.start()
        before = done
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert errors, "the outage was not noticed"
        assert done > before, "no progress after the restart"
        assert all(isinstance(e, StateError) for e in errors)
        await ly.store.purge()
