"""Outages of the DynamoDB endpoint: fast, typed failures and recovery on the same handle.

Each test runs its own moto process, so stopping it disturbs nobody else. moto keeps its data in
memory: after a restart the table is gone (DynamoDB's data would survive an endpoint outage), so
the restart test re-provisions the table the way a deployment would, with a separate
``create_table=true`` connect, and checks that the original handle recovers without
reconnecting. The backend itself never re-creates a table that vanished under it: that would
silently restart every fencing counter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import lockyard
from lockyard import BackendConnectionError, BackendError, OperationTimeoutError
from lockyard_dev.servers.moto import MotoServer

pytestmark = pytest.mark.dynamodb

#: An unreachable endpoint must be reported well inside the operation timeout (5 s by default).
FAST_FAILURE_S = 1.0


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[MotoServer]:
    moto = MotoServer(tmp_path)
    await asyncio.to_thread(moto.start)
    try:
        yield moto
    finally:
        await asyncio.to_thread(moto.__exit__, None, None, None)


async def elapsed(action: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await action
    return time.perf_counter() - started


async def raises_quickly(
    error: type[Exception], operation: Callable[[], Awaitable[Any]], bound_s: float
) -> float:
    started = time.perf_counter()
    with pytest.raises(error):
        await operation()
    took = time.perf_counter() - started
    assert took < bound_s, f"{error.__name__} took {took:.3f}s"
    return took


async def test_a_stopped_endpoint_fails_fast_and_the_same_handle_recovers(
    server: MotoServer,
) -> None:
    url = server.url("outage", "p")
    async with lockyard.connect(url) as ly:
        store, locks = ly.store, ly.locks
        await store.set("ns:acme:state:k", "before")
        guard = await locks.try_acquire("job", 30)
        assert guard is not None

        server.kill()
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get("ns:acme:state:k"),
            lambda: store.set("ns:acme:state:k", "during"),
            lambda: store.increment("ns:acme:counter:c", 1),
            lambda: store.check_and_set("ns:acme:dedup:d", "x"),
            lambda: store.scan_keys_by_kind("state"),
            lambda: store.get_expired_timeouts(0),
            lambda: locks.try_acquire("other", 5),
            lambda: guard.extend(30),
            ly.ping,
        ]
        failures = [
            await raises_quickly(BackendConnectionError, op, FAST_FAILURE_S) for op in operations
        ]
        print(f"\noutage: {len(failures)} ops failed, slowest {max(failures) * 1000:.1f} ms")

        await asyncio.to_thread(server.start)
        restarted = time.perf_counter()
        # moto lost the table; the backend reports it instead of re-creating it.
        with pytest.raises(BackendError, match="outage"):
            await store.get("ns:acme:state:k")
        async with lockyard.connect(url):
            pass  # the deployment's provisioning step (create_table=true)
        assert await store.get("ns:acme:state:k") is None
        await store.set("ns:acme:state:k", "after")
        assert await store.get("ns:acme:state:k") == "after"
        print(f"recovered {(time.perf_counter() - restarted) * 1000:.0f} ms after the restart")
        assert await locks.try_acquire("job", 5) is not None
        await store.purge()


async def test_a_frozen_endpoint_times_out_and_the_handle_recovers(server: MotoServer) -> None:
    async with lockyard.connect(server.url("frozen", "p", timeout="0.5")) as ly:
        await ly.store.set("ns:acme:state:k", "kept")
        server.freeze()
        try:
            took = await raises_quickly(
                OperationTimeoutError, lambda: ly.store.get("ns:acme:state:k"), 1.5
            )
            assert took >= 0.5
            await raises_quickly(OperationTimeoutError, lambda: ly.locks.try_acquire("j", 5), 1.5)
        finally:
            server.thaw()
        assert await ly.store.get("ns:acme:state:k") == "kept"
        print(f"\nfrozen endpoint: OperationTimeoutError after {took * 1000:.0f} ms")


async def slowest_round_trip(server: MotoServer) -> float:
    """The slowest of a few requests to ``server`` right now (a fresh handle's first included)."""
    async with lockyard.connect(server.url("probe", "p")) as ly:
        return max([await ly.ping() for _ in range(3)])


async def test_a_short_outage_does_not_lose_a_held_lock(server: MotoServer) -> None:
    """Renewal retries through a stall shorter than the lease (the lock's data survives a
    SIGSTOP, unlike a moto restart). Every duration is a multiple of the operation timeout,
    1 s, or more when a request takes longer than a fifth of that right now (a fresh handle's
    first request once took over 0.5 s beside two CPU hogs). With 0.5 s, the release after the
    thaw timed out once in a full CI run: moto, one request at a time, was still answering the
    renewals sent into the stall while the suite loaded both cores."""
    timeout = max(1.0, 5 * await slowest_round_trip(server))
    async with lockyard.connect(server.url("stall", "p", timeout=f"{timeout:.3f}")) as ly:
        guard_hold = ly.locks.hold("job", ttl=6 * timeout)
        async with guard_hold as guard:
            server.freeze()
            try:
                await asyncio.sleep(2.4 * timeout)
            finally:
                server.thaw()
            await asyncio.sleep(3 * timeout)
            assert await guard.is_held()
            assert not guard.lost.is_set()
