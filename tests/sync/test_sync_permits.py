"""Semaphores and read-write locks through the blocking API: the thread is the caller, as the
task is in the async API. On the memory backend: the first to offer both (the conformance
suite runs them on every backend that does, through tests/sync/test_conformance_sync_*)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import lockyard.sync
from lockyard import LockLostError, LockUpgradeError


@pytest.fixture
def ly() -> Iterator[lockyard.sync.Connection]:
    with lockyard.sync.connect(f"memory://?prefix=p{uuid.uuid4().hex[:10]}") as handle:
        yield handle


def test_a_thread_that_reads_may_not_write_but_another_thread_may_read(
    ly: lockyard.sync.Connection,
) -> None:
    name = f"rw-{uuid.uuid4().hex[:8]}"
    with ly.rwlocks.hold_read(name, 30) as reading:
        assert reading.mode == "read"
        with pytest.raises(LockUpgradeError):
            ly.rwlocks.acquire_write(name, 30, timeout=5)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            beside = pool.submit(ly.rwlocks.acquire_read, name, 30, 5).result(10)
            assert beside.mode == "read"
            pool.submit(beside.release).result(10)
    writer = ly.rwlocks.acquire_write(name, 30, timeout=5)
    writer.release()


def test_a_semaphore_lets_limit_threads_in_at_once(ly: lockyard.sync.Connection) -> None:
    name, limit = f"sem-{uuid.uuid4().hex[:8]}", 3
    inside = peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(3):
            with ly.semaphores.hold(name, limit, 30, timeout=60) as permit:
                assert permit.limit == limit
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.01)
                with lock:
                    inside -= 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work) for _ in range(8)]:
            future.result(60)
    assert peak == limit


def test_a_broken_permit_reaches_the_thread_in_the_block(ly: lockyard.sync.Connection) -> None:
    name = f"sem-{uuid.uuid4().hex[:8]}"
    with pytest.raises(LockLostError), ly.semaphores.hold(name, 2, 0.6) as permit:
        assert ly.semaphores.break_permit(name, permit.owner)
        assert permit.lost.wait(10)
        ly.store.get("ns:acme:state:after-the-loss")
