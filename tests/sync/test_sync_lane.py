"""The direct lane (``lockyard.sync.lane``): one-round-trip calls run in their calling thread.

On single-server Redis a store operation, an uncontended ``acquire`` and a ``release`` are
driven in the calling thread, on a socket of that thread. These tests pin what that must keep
from the loop path: its own connection per thread (closed with the thread or the handle), the
operation timeout, one failed call per thread after a server restart, observers called on the
loop, and contended acquisitions that continue on the loop in first-come order.
"""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import lockyard
import lockyard.sync
from lockyard import BackendConnectionError, OperationTimeoutError
from lockyard.locks import LockGuard
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis


def key() -> str:
    return f"ns:lane:state:{uuid.uuid4().hex[:8]}"


def lockyard_clients(server: RedisServer) -> int:
    with server.admin() as admin:
        return sum(1 for client in admin.client_list() if client.get("name") == "lockyard")


@pytest.fixture
def ly(redis_server: RedisServer) -> Iterator[lockyard.sync.Connection]:
    with lockyard.sync.connect(redis_server.url(f"lane-{uuid.uuid4().hex[:6]}")) as handle:
        yield handle


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own: these tests restart and pause it."""
    with RedisServer() as server:
        yield server


def test_each_calling_thread_uses_its_own_socket_closed_with_the_thread(
    own_server: RedisServer,
) -> None:
    with lockyard.sync.connect(own_server.url("lane")) as ly:
        before = lockyard_clients(own_server)
        done, leave = threading.Barrier(4), threading.Event()

        def work() -> None:
            ly.store.set(key(), "v")
            ly.locks.acquire(f"lane-{uuid.uuid4().hex[:6]}", 30, timeout=5).release()
            done.wait(10)
            leave.wait(10)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        done.wait(10)
        assert lockyard_clients(own_server) == before + 3  # one each, nothing on the loop
        leave.set()
        for thread in threads:
            thread.join(10)
        gc.collect()  # a thread's socket closes when the thread's state is collected
        deadline = time.monotonic() + 10
        while lockyard_clients(own_server) > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lockyard_clients(own_server) == before
        ly.store.get(key())  # the main thread's own
        assert lockyard_clients(own_server) == before + 1
    assert lockyard_clients(own_server) == 0


def test_a_direct_call_times_out_at_the_operation_timeout_and_the_next_works(
    own_server: RedisServer,
) -> None:
    with lockyard.sync.connect(own_server.url("lane", operation_timeout="0.3")) as ly:
        name = key()
        ly.store.set(name, "v")
        with own_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            try:
                started = time.monotonic()
                with pytest.raises(OperationTimeoutError, match=r"operation timeout of 0\.3s"):
                    ly.store.get(name)
                assert time.monotonic() - started < 1.4  # the timeout, not the pause, ended it
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        assert ly.store.get(name) == "v"  # a new socket: the late reply answers nothing


def test_a_server_restart_fails_one_call_per_thread_and_the_next_reconnects(
    own_server: RedisServer,
) -> None:
    with lockyard.sync.connect(own_server.url("lane")) as ly:
        name = key()
        ly.store.set(name, "before")
        own_server.restart()
        outcomes: list[str] = []
        for _ in range(3):
            try:
                ly.store.set(name, "after")
                outcomes.append("ok")
            except BackendConnectionError:
                outcomes.append("failed")
        assert outcomes in (["failed", "ok", "ok"], ["ok", "ok", "ok"])
        assert ly.store.get(name) == "after"
        guard = ly.locks.acquire("after-restart", 30, timeout=5)
        assert guard.is_held()
        guard.release()


class ThreadRecorder:
    """A lock observer that records which thread each event was delivered on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def lock_acquired(self, guard: LockGuard) -> None:
        self.events.append(("acquired", threading.get_ident()))

    def lock_extended(self, guard: LockGuard) -> None:
        self.events.append(("extended", threading.get_ident()))

    def lock_released(self, guard: LockGuard) -> None:
        self.events.append(("released", threading.get_ident()))


def test_observers_hear_of_direct_calls_on_the_loop_in_order(ly: lockyard.sync.Connection) -> None:
    recorder = ThreadRecorder()

    async def observe(connection: Any) -> None:
        connection.locks.add_observer(recorder)

    ly.run(observe)
    guard = ly.locks.acquire("observed", 30, timeout=5)
    guard.extend(30)
    guard.release()
    loop_thread = ly._portal.thread
    assert loop_thread is not None
    deadline = time.monotonic() + 10
    while len(recorder.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.events == [
        ("acquired", loop_thread.ident),
        ("extended", loop_thread.ident),
        ("released", loop_thread.ident),
    ]


def test_contended_acquires_from_threads_are_served_first_come_first_served(
    ly: lockyard.sync.Connection,
) -> None:
    holder = ly.locks.acquire("fifo", 30, timeout=5)
    order: list[int] = []

    def wait(number: int) -> None:
        guard = ly.locks.acquire("fifo", 30, timeout=20)
        order.append(number)
        guard.release()

    threads = []
    for number in range(4):
        thread = threading.Thread(target=wait, args=(number,))
        thread.start()
        threads.append(thread)
        wait_until_queued(ly, "fifo", number + 1)  # before the next one starts
    holder.release()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3]


async def _queue_length(connection: Any, name: str) -> int:
    locks = connection.locks
    queue = locks._layout.lock_keys(name)[2]
    return int(await locks._client.zcard(queue))


def wait_until_queued(ly: lockyard.sync.Connection, name: str, waiters: int) -> None:
    """Until ``waiters`` waiters are queued for lock ``name`` on the server (on the loop)."""
    deadline = time.monotonic() + 10
    while ly.run(lambda c: _queue_length(c, name)) < waiters:
        assert time.monotonic() < deadline, f"fewer than {waiters} waiters ever queued"
        time.sleep(0.01)


def test_an_interrupted_wait_raises_in_its_thread_and_leaves_the_queue(
    ly: lockyard.sync.Connection,
) -> None:
    holder = ly.locks.acquire("interrupted", 30, timeout=5)
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            ly.locks.acquire("interrupted", 30, timeout=30)
        except concurrent.futures.CancelledError as exc:
            raised.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until_queued(ly, "interrupted", 1)
    assert lockyard.sync.interrupt(thread)
    thread.join(10)
    assert not thread.is_alive()
    assert len(raised) == 1
    assert ly.run(lambda c: _queue_length(c, "interrupted")) == 0  # it left the queue
    holder.release()
    assert ly.locks.try_acquire("interrupted", 30) is not None


def test_threads_cycling_through_a_server_restart_each_recover(own_server: RedisServer) -> None:
    """Four threads cycle a lock each while the server restarts under them: while it is down
    they see connection failures (no other error, no hang); once it is back each fails at most
    one more call and then cycles again on a new socket."""
    with lockyard.sync.connect(own_server.url("lane-restart", operation_timeout="2")) as ly:
        stop = threading.Event()
        failures_after: dict[int, list[str]] = {number: [] for number in range(4)}
        after_restart: dict[int, int] = dict.fromkeys(range(4), 0)
        restarted = threading.Event()

        def cycle(number: int) -> None:
            while not stop.is_set():
                try:
                    guard = ly.locks.acquire(f"restart-{number}", 30, timeout=5)
                    guard.release()
                    if restarted.is_set():
                        after_restart[number] += 1
                except (BackendConnectionError, lockyard.LockExpiredError) as exc:
                    # A release whose lease the restart wiped finds it gone: LockExpiredError.
                    if restarted.is_set():
                        failures_after[number].append(type(exc).__name__)

        threads = [threading.Thread(target=cycle, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        own_server.restart()
        restarted.set()
        deadline = time.monotonic() + 20
        while min(after_restart.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in threads)
    assert min(after_restart.values()) >= 20, after_restart
    assert all(len(errors) <= 1 for errors in failures_after.values()), failures_after
