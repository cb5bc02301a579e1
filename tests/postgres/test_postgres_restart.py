"""A PostgreSQL restart mid-run: fail fast while down, recover on the same handle, lose nothing.

These tests stop and crash their own server, so they do not share the session's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from postgres_helpers import backend_of

import lockyard
from lockyard.backends.postgres import SETUP_TIMEOUT_S
from lockyard.locks import LockGuard
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres

OPERATION_TIMEOUT_S = 2.0
SCHEMA = "restart"
BACKEND_PID = "SELECT pg_backend_pid()"
BACKEND_PID_AFTER_A_PAUSE = "SELECT pg_backend_pid() FROM pg_sleep(0.05)"
#: The lease of the lock the seed releases just before a crash (see ``check``).
RELEASED_TTL_S = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    # Prepared transactions: a row lock that outlives its session (see the shutdown test).
    with PostgresServer(settings={"max_prepared_transactions": "4"}) as started:
        yield started


@pytest.fixture
def running(server: PostgresServer) -> PostgresServer:
    if not server.running:
        server.start()
    return server


@dataclass
class Seeded:
    held: LockGuard
    held_token: int
    released_token: int


async def seed(ly: lockyard.Connection) -> Seeded:
    store, locks = ly.store, ly.locks
    for value in ("v1", "v2", "v3"):
        await store.set("ns:t:state:record", value)
    await store.set("ns:t:state:with-ttl", "t", ttl=3600)
    for _ in range(5):
        await store.increment("ns:t:counter:c", 1)
    assert await store.check_and_set("ns:t:dedup:msg", "seen")
    await store.index_timeout("ns:t:event_timeout:e1", 100)
    await store.index_chain_ready("ns:t:chain:c1", 200)
    for _ in range(3):
        await (await locks.acquire("held", 5, timeout=1)).release()
    held = await locks.acquire("held", 60, timeout=1)
    released = await locks.acquire("released", RELEASED_TTL_S, timeout=1)
    await released.release()
    return Seeded(held, held.fencing_token, released.fencing_token)


async def check(ly: lockyard.Connection, seeded: Seeded) -> None:
    store, locks = ly.store, ly.locks
    assert await store.get_versioned("ns:t:state:record") == ("v3", 3)
    assert await store.get("ns:t:state:with-ttl") == "t"
    assert await store.get_versioned("ns:t:counter:c") == ("5", 5)
    assert not await store.check_and_set("ns:t:dedup:msg", "again")
    assert set(await store.scan_keys("ns", "t", "state")) == {
        ("ns:t:state:record", "v3"),
        ("ns:t:state:with-ttl", "t"),
    }
    assert await store.get_expired_timeouts(150) == ["ns:t:event_timeout:e1"]
    assert await store.get_ready_chains(200) == ["ns:t:chain:c1"]
    assert await seeded.held.is_held()
    assert await locks.try_acquire("held", 5) is None
    held = {(i.name, i.fencing_token) for i in await locks.list_held()}
    # The last release may have been undone by a crash (see "released" below).
    assert held - {("released", seeded.released_token)} == {("held", seeded.held_token)}
    await seeded.held.extend(60)
    await seeded.held.release()
    again = await locks.acquire("held", 5, timeout=1)
    assert again.fencing_token == seeded.held_token + 1
    await again.release()
    # A release does not wait for its WAL flush: a crash right after it may undo it, and the
    # lease then ends on its own (docs/backends/postgres.md, *Durability*). Either way the next
    # holder's token is the next one.
    other = await locks.acquire("released", 5, timeout=RELEASED_TTL_S + 1)
    assert other.fencing_token == seeded.released_token + 1
    await other.release()


def while_down(ly: lockyard.Connection, seeded: Seeded) -> list[Callable[[], Awaitable[object]]]:
    store = ly.store
    return [
        lambda: store.get("ns:t:state:record"),
        lambda: store.set("ns:t:state:record", "lost"),
        lambda: store.increment("ns:t:counter:c", 1),
        lambda: store.compare_and_swap("ns:t:state:record", 3, "lost"),
        lambda: store.scan_keys_by_kind("state"),
        lambda: store.get_expired_timeouts(150),
        lambda: ly.locks.try_acquire("held", 5),
        lambda: seeded.held.is_held(),
    ]


async def fail_fast_while_down(ly: lockyard.Connection, seeded: Seeded) -> float:
    """Every operation raises BackendConnectionError well within the operation timeout."""
    slowest = 0.0
    for operation in while_down(ly, seeded):
        started = time.monotonic()
        with pytest.raises(lockyard.BackendConnectionError):
            await operation()
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < OPERATION_TIMEOUT_S
    return slowest


async def first_operation_after_start(ly: lockyard.Connection) -> None:
    """The first operation after the server is back succeeds (no stale pooled connection)."""
    assert await ly.store.get("ns:t:state:record") == "v3"


async def wake_through_notify(ly: lockyard.Connection, server: PostgresServer) -> None:
    listener = backend_of(ly).listener
    await asyncio.wait_for(listener.connected.wait(), 10)
    ly.locks.poll_initial_s = ly.locks.poll_cap_s = 5.0
    # The holder is another client: a waiter in the releasing handle itself is woken without
    # a notification.
    peer_url = server.url(prefix=backend_of(ly).config.prefix, schema=SCHEMA)
    async with lockyard.connect(peer_url) as peer:
        holder = await peer.locks.acquire("wake", 30, timeout=1)
        waiter = asyncio.create_task(ly.locks.acquire("wake", 30, timeout=10))
        await asyncio.sleep(0.2)
        released_at = time.monotonic()
        await holder.release()
        guard = await waiter
        assert time.monotonic() - released_at < 0.1
        await guard.release()


def url(server: PostgresServer, timeout: float = OPERATION_TIMEOUT_S) -> str:
    return server.url(prefix=f"r{uuid.uuid4().hex[:8]}", schema=SCHEMA, timeout=str(timeout))


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_restart_loses_nothing_and_the_same_handle_recovers(
    running: PostgresServer, how: str
) -> None:
    async with lockyard.connect(url(running)) as ly:
        seeded = await seed(ly)
        # Every pooled connection is open when the server goes away.
        await asyncio.gather(*(ly.store.get(f"ns:t:state:{i}") for i in range(30)))
        # So is the LISTEN connection. The first refused waiter would start it; the seed only
        # takes free locks, which need no release watch.
        backend_of(ly).listener.start()
        await asyncio.wait_for(backend_of(ly).listener.connected.wait(), 10)
        running.stop() if how == "stop" else running.kill()
        await fail_fast_while_down(ly, seeded)
        running.start()
        await first_operation_after_start(ly)
        await check(ly, seeded)
        await wake_through_notify(ly, running)
        assert backend_of(ly).listener.connections >= 2
        await ly.store.purge()


async def test_a_restart_the_event_loop_never_saw_costs_at_most_one_failed_operation(
    running: PostgresServer,
) -> None:
    """A crash and restart while the loop is blocked: pooled sockets died unnoticed.

    The first operation may find its connection dead (BackendConnectionError). That expires
    every connection opened before it, including those whose end the loop has not seen yet (a
    killed process may close its socket late under load), so the next operation runs on a
    fresh connection.
    """
    async with lockyard.connect(url(running)) as ly:
        seeded = await seed(ly)
        await asyncio.gather(*(ly.store.get(f"ns:t:state:{i}") for i in range(30)))
        running.kill()
        running.start()
        failures = 0
        for _ in range(3):
            try:
                assert await ly.store.get("ns:t:state:record") == "v3"
            except lockyard.BackendConnectionError:
                failures += 1
        assert failures <= 1
        await check(ly, seeded)
        await ly.store.purge()


def terminate_and_wait(pid: int) -> None:
    """SIGTERM one server process and wait, blocking the event loop, until it has exited.

    The loop must not run meanwhile: it would read the end of that connection, and the pool
    would skip it instead of finding it dead.
    """
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "(postgres) Z" not in read_stat(pid):
        assert time.monotonic() < deadline, f"server process {pid} did not exit"
        time.sleep(0.01)


def read_stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""


async def test_a_connection_found_dead_retires_every_connection_opened_before_it(
    running: PostgresServer,
) -> None:
    """One failed operation, then only fresh connections, whatever the loop has seen.

    The server process of one pooled connection exits while the others stay up; the operation
    that gets that connection fails, and no later operation runs on a connection opened
    before the failure (without the expiry, the pool would hand out the older ones again).
    """
    async with lockyard.connect(url(running)) as ly:
        db = backend_of(ly).db
        pool_size = backend_of(ly).config.pool_size
        # Overlapping statements: every pooled connection is opened.
        opened = set(
            await asyncio.gather(
                *(db.fetchval(BACKEND_PID_AFTER_A_PAUSE) for _ in range(pool_size))
            )
        )
        assert len(opened) == pool_size
        # The connection just released is the one the pool hands out next (last in, first out).
        doomed = await db.fetchval(BACKEND_PID)
        terminate_and_wait(doomed)
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, OSError)):
            await db.fetchval(BACKEND_PID)
        after = {await db.fetchval(BACKEND_PID) for _ in range(pool_size)}
        after |= set(
            await asyncio.gather(
                *(db.fetchval(BACKEND_PID_AFTER_A_PAUSE) for _ in range(pool_size))
            )
        )
        assert not after & opened
        assert await ly.store.get("ns:t:state:none") is None


async def test_an_operation_in_flight_during_shutdown_fails_fast(running: PostgresServer) -> None:
    # The write waits on a row lock held by a *prepared* transaction: a lock held by a session
    # is released when the shutdown ends that session, and if that happened before the
    # waiting backend was told to stop (the postmaster signals them one by one), the write
    # went through and nothing was in flight. A prepared transaction survives the shutdown.
    gid = f"lockyard-test-{uuid.uuid4().hex[:8]}"
    async with lockyard.connect(url(running)) as ly:
        await ly.store.set("ns:t:state:blocked", "a")
        blocker = await asyncpg.connect(running.dsn())
        try:
            await blocker.execute("BEGIN")
            await blocker.execute(
                f"SELECT FROM {SCHEMA}.entries WHERE key = 'ns:t:state:blocked' FOR UPDATE"
            )
            await blocker.execute(f"PREPARE TRANSACTION '{gid}'")
            blocked = asyncio.create_task(ly.store.set("ns:t:state:blocked", "b"))
            await asyncio.sleep(0.2)
            assert not blocked.done()
            started = time.monotonic()
            await asyncio.to_thread(running.stop)
            with pytest.raises(lockyard.BackendConnectionError):
                await blocked
            assert time.monotonic() - started < OPERATION_TIMEOUT_S
        finally:
            blocker.terminate()
            if not running.running:
                running.start()
            admin = await asyncpg.connect(running.dsn())
            try:
                prepared = await admin.fetchval(
                    "SELECT 1 FROM pg_prepared_xacts WHERE gid = $1", gid
                )
                if prepared:
                    await admin.execute(f"ROLLBACK PREPARED '{gid}'")
            finally:
                await admin.close()
        assert await ly.store.get_versioned("ns:t:state:blocked") == ("a", 1)
        await ly.store.purge()


async def test_connecting_while_the_server_is_down_fails_fast(running: PostgresServer) -> None:
    target = url(running)
    running.stop()
    started = time.monotonic()
    with pytest.raises(lockyard.BackendConnectionError):
        await lockyard.connect(target)
    assert time.monotonic() - started < OPERATION_TIMEOUT_S
    running.start()
    async with lockyard.connect(target) as ly:
        assert await ly.store.get("ns:t:state:none") is None


async def test_connecting_to_a_hung_server_fails_as_unreachable_at_the_connect_timeout(
    running: PostgresServer,
) -> None:
    """SIGSTOP: the kernel accepts the connection and nothing answers it. Opening a handle gives
    up when the connect does (the operation timeout), as an unreachable server, and says so;
    not after the longer setup timeout, and not as a setup step that ran too long."""
    target = url(running, timeout=1.0)
    running.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(lockyard.BackendConnectionError, match="no answer within 1s"):
            await lockyard.connect(target)
        assert time.monotonic() - started < SETUP_TIMEOUT_S / 2
    finally:
        running.thaw()
    async with lockyard.connect(target) as ly:
        assert await ly.store.get("ns:t:state:none") is None


async def test_a_hung_server_times_out_instead_of_hanging(running: PostgresServer) -> None:
    """SIGSTOP: connections stay open and nothing answers. Operations end at the timeout (the
    connection is dropped rather than waiting on a cancel request), and the handle recovers."""
    timeout = 1.0
    async with lockyard.connect(url(running, timeout)) as ly:
        await ly.store.set("ns:t:state:hung", "a")
        await asyncio.gather(*(ly.store.get(f"ns:t:state:{i}") for i in range(30)))
        running.freeze()
        try:
            for operation in (
                lambda: ly.store.set("ns:t:state:hung", "b"),
                lambda: ly.store.get("ns:t:state:hung"),
                lambda: ly.locks.try_acquire("hung", 5),
            ):
                started = time.monotonic()
                with pytest.raises(lockyard.OperationTimeoutError):
                    await operation()
                assert time.monotonic() - started < timeout + 0.5
        finally:
            running.thaw()
        assert await ly.store.get("ns:t:state:hung") in {"a", "b"}
        await ly.store.purge()
