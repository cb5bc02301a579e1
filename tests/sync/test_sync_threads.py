"""Threads on one blocking handle (real Redis): sharing, interruption, and lost locks.

The loss signal in a thread, as docs/sync.md states it: ``guard.lost`` is set; the Lockyard
call the block's thread is blocked in raises ``LockLostError``, or else its next call does
(once); leaving the block raises it too unless the block raised something; ``on_lost`` runs.
"""

from __future__ import annotations

import concurrent.futures
import gc
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import lockyard.sync
from lockyard import LockLostError
from lockyard.sync import LockGuard
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

#: Well below the 2 s waiter lease: a hand-off this fast proves the quitter left the queue.
PROMPT_HANDOFF_S = 1.0


@pytest.fixture
def ly(redis_server: RedisServer) -> Iterator[lockyard.sync.Connection]:
    with lockyard.sync.connect(redis_server.url(f"s{uuid.uuid4().hex[:10]}")) as handle:
        yield handle
        handle.store.purge()


def lock_name() -> str:
    return f"lock-{uuid.uuid4().hex[:8]}"


def key(kind: str = "state") -> str:
    return f"ns:acme:{kind}:{uuid.uuid4().hex[:8]}"


def test_threads_share_one_handle(ly: lockyard.sync.Connection) -> None:
    counter, name = key("counter"), lock_name()
    inside, entered = 0, 0

    def work() -> None:
        nonlocal inside, entered
        for _ in range(25):
            ly.store.increment(counter, 1)
        for _ in range(3):
            with ly.locks.hold(name, 5, timeout=60):
                inside += 1
                entered += 1
                assert inside == 1
                time.sleep(0.001)
                inside -= 1

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(work) for _ in range(16)]:
            future.result()
    assert ly.store.get(counter) == str(16 * 25)
    assert entered == 16 * 3


def test_interrupt_stops_a_waiting_acquire_and_it_leaves_the_queue(
    ly: lockyard.sync.Connection,
) -> None:
    name = lock_name()
    holder = ly.locks.acquire(name, 30, timeout=1)
    outcomes: dict[str, object] = {}

    def wait(label: str) -> None:
        try:
            outcomes[label] = ly.locks.acquire(name, 30, timeout=30)
        except BaseException as exc:
            outcomes[label] = exc

    quitter = threading.Thread(target=wait, args=("quitter",))
    quitter.start()
    time.sleep(0.3)  # queued first
    patient = threading.Thread(target=wait, args=("patient",))
    patient.start()
    time.sleep(0.3)
    assert lockyard.sync.interrupt(quitter)
    quitter.join(10)
    assert isinstance(outcomes["quitter"], concurrent.futures.CancelledError)
    released_at = time.monotonic()
    holder.release()
    patient.join(10)
    guard = outcomes["patient"]
    assert isinstance(guard, LockGuard)
    assert time.monotonic() - released_at < PROMPT_HANDOFF_S
    guard.release()
    assert not lockyard.sync.interrupt(patient)  # finished: nothing to interrupt


class Interrupted(Exception):
    """What the test's signal handler raises (as Ctrl-C raises KeyboardInterrupt)."""


def test_a_signal_in_the_main_thread_cancels_the_call_and_it_leaves_the_queue(
    ly: lockyard.sync.Connection,
) -> None:
    name = lock_name()
    holder = ly.locks.acquire(name, 30, timeout=1)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted):
            ly.locks.acquire(name, 30, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(ly.locks.acquire, name, 30, 30)
        time.sleep(0.3)
        released_at = time.monotonic()
        holder.release()
        guard = waiter.result(10)
    assert time.monotonic() - released_at < PROMPT_HANDOFF_S
    guard.release()


def test_hold_renews_while_a_thread_works(ly: lockyard.sync.Connection) -> None:
    name = lock_name()
    # Renewed every 0.5 s while this thread sleeps (each renewal with 0.85 s to land, room
    # for a loaded machine's pauses): the sleep spans seven renewals.
    with ly.locks.hold(name, 1.5) as guard:
        time.sleep(3.5)
        assert guard.is_held()
        assert ly.locks.try_acquire(name, 5) is None
    assert not guard.lost.is_set()
    assert not guard.is_held()


def test_a_loss_raises_at_the_next_call_once_and_again_on_leaving(
    ly: lockyard.sync.Connection,
) -> None:
    name, k = lock_name(), key()
    called: list[tuple[LockGuard, str]] = []

    def on_lost(guard: LockGuard) -> None:
        called.append((guard, threading.current_thread().name))

    with pytest.raises(LockLostError), ly.locks.hold(name, 0.6, on_lost=on_lost) as guard:
        assert ly.locks.break_lock(name)
        assert guard.lost.wait(10)
        with pytest.raises(LockLostError, match=name):
            ly.store.get(k)
        assert ly.store.get(k) is None  # delivered once
    assert called
    assert called[0][0] is guard
    assert called[0][1].endswith("-loop")  # the handle's loop thread


def test_a_loss_interrupts_the_call_the_block_is_blocked_in(
    ly: lockyard.sync.Connection,
) -> None:
    name, other = lock_name(), lock_name()
    ttl = 0.6
    other_holder = ly.locks.acquire(other, 60, timeout=1)
    breaker = threading.Timer(0.3, ly.locks.break_lock, args=(name,))
    started = time.monotonic()
    with pytest.raises(LockLostError, match=name), ly.locks.hold(name, ttl) as guard:
        breaker.start()
        ly.locks.acquire(other, 60, timeout=60)  # blocked here when the loss is found
    elapsed = time.monotonic() - started
    breaker.join()
    assert guard.lost.is_set()
    # Found at the next renewal (every ttl/3) after the break, not after the 60 s wait.
    assert elapsed < 10 * ttl
    # The interrupted waiter left the other lock's queue: a new waiter gets it at once.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(ly.locks.acquire, other, 30, 30)
        time.sleep(0.3)
        released_at = time.monotonic()
        other_holder.release()
        waiter.result(10).release()
    assert time.monotonic() - released_at < PROMPT_HANDOFF_S


def test_a_block_that_raises_keeps_its_error_with_the_loss_as_a_note(
    ly: lockyard.sync.Connection,
) -> None:
    name = lock_name()
    with pytest.raises(RuntimeError, match="mine") as raised, ly.locks.hold(name, 0.6) as guard:
        assert ly.locks.break_lock(name)
        assert guard.lost.wait(10)
        raise RuntimeError("mine")
    assert any("lost" in note for note in raised.value.__notes__)


def test_a_blocking_call_from_the_loop_thread_is_refused(ly: lockyard.sync.Connection) -> None:
    async def call_back_in(connection: lockyard.Connection) -> object:
        return ly.store.get(key())

    with pytest.raises(RuntimeError, match="deadlock"):
        ly.run(call_back_in)


def test_run_reaches_the_async_connection(ly: lockyard.sync.Connection) -> None:
    k = key()
    ly.store.set(k, "v")

    async def read(connection: lockyard.Connection) -> str | None:
        return await connection.store.get(k)

    assert ly.run(read) == "v"


def test_close_stops_the_loop_thread_and_later_calls_fail(redis_server: RedisServer) -> None:
    handle = lockyard.sync.connect(redis_server.url("closing"))
    handle.ping()
    thread = handle._portal.thread
    assert thread is not None
    assert thread.is_alive()
    handle.close()
    handle.close()
    assert handle.closed
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        handle.store.get(key())


def test_connect_raises_now_and_leaves_no_thread() -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("lockyard-sync")}
    with pytest.raises(lockyard.BackendConnectionError):
        lockyard.sync.connect("redis://127.0.0.1:1/0?prefix=nowhere")
    with pytest.raises(lockyard.ConfigError):
        lockyard.sync.connect("nosuch://x")
    after = {t for t in threading.enumerate() if t.name.startswith("lockyard-sync")}
    assert after <= before


def test_a_handle_dropped_without_close_stops_its_thread(redis_server: RedisServer) -> None:
    handle = lockyard.sync.connect(redis_server.url("dropped"))
    handle.ping()
    thread = handle._portal.thread
    assert thread is not None
    del handle
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
