"""Lock-cycle benchmarks: uncontended acquire/release, and many workers fighting for one name.

A *handle* is one worker's view of one named lock: ``acquire()`` blocks until held (or returns
``False`` when the library's own wait timeout ran out) and ``release()`` lets go. Lockyard and
every peer library are wrapped as handles (see :mod:`lockyard_dev.bench.peers`); asyncio libraries
give ``AsyncHandle`` objects run as tasks, blocking libraries give ``SyncHandle`` objects run in
threads, one thread per worker.

The contended run checks mutual exclusion on every critical section with a shared flag (a
counter of holders behind a ``threading.Lock``, valid for tasks and threads alike): entering
while another worker is inside counts a violation. It records, per cycle, when the worker started
waiting, when it got the lock and when it began releasing, and derives:

- ``wait_p50_ms`` / ``wait_p99_ms``: start of ``acquire`` to holding the lock;
- ``handover_p50_ms`` / ``handover_p99_ms``: one holder starting its release to the next holder
  getting the lock, counted only when that next holder was already waiting;
- ``fairness``: the largest worker's share of critical sections over the smallest (1.0 is
  perfectly even; ``inf`` when a worker never got in);
- ``violations`` and ``timeouts`` (acquisitions the library gave up on).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lockyard_dev.bench.stats import NAN, OPS_PER_S, Sample, now_ns, percentile, settle_gc

#: How long one acquisition may wait before the library gives up (counted as a timeout).
ACQUIRE_TIMEOUT_S = 30.0
#: A lease long enough never to expire during a benchmark.
LOCK_TTL_S = 30.0


class AsyncHandle(Protocol):
    async def acquire(self) -> bool: ...

    async def release(self) -> None: ...


class SyncHandle(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(slots=True)
class _Cycle:
    worker: int
    waited_from: int
    acquired_at: int
    released_at: int = 0


@dataclass
class CriticalSections:
    """The shared flag and the cycle log of one contended run (safe for tasks and threads)."""

    workers: int
    target: int
    deadline_ns: int
    cycles: list[_Cycle] = field(default_factory=list)
    violations: int = 0
    timeouts: int = 0
    _holders: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def more(self) -> bool:
        return len(self.cycles) < self.target and now_ns() < self.deadline_ns

    def enter(self, worker: int, waited_from: int) -> _Cycle:
        acquired = now_ns()
        with self._guard:
            if self._holders:
                self.violations += 1
            self._holders += 1
            cycle = _Cycle(worker, waited_from, acquired)
            self.cycles.append(cycle)
        return cycle

    def leave(self, cycle: _Cycle) -> None:
        with self._guard:
            self._holders -= 1
        cycle.released_at = now_ns()

    def timed_out(self) -> None:
        with self._guard:
            self.timeouts += 1

    def figures(self, wall_ns: int) -> dict[str, float]:
        cycles = sorted(self.cycles, key=lambda c: c.acquired_at)
        waits = sorted(c.acquired_at - c.waited_from for c in cycles)
        handovers = sorted(
            nxt.acquired_at - prev.released_at
            for prev, nxt in itertools.pairwise(cycles)
            if nxt.waited_from < prev.released_at and prev.released_at
        )
        counts = [0] * self.workers
        for cycle in cycles:
            counts[cycle.worker] += 1
        fairness = max(counts) / min(counts) if min(counts) else math.inf
        return {
            OPS_PER_S: len(cycles) / (wall_ns / 1e9) if wall_ns > 0 else NAN,
            "wait_p50_ms": percentile(waits, 50) / 1e6,
            "wait_p99_ms": percentile(waits, 99) / 1e6,
            "handover_p50_ms": percentile(handovers, 50) / 1e6,
            "handover_p99_ms": percentile(handovers, 99) / 1e6,
            "fairness": fairness if cycles else NAN,
            "violations": float(self.violations),
            "timeouts": float(self.timeouts),
            "cycles": float(len(cycles)),
        }


@dataclass(frozen=True, slots=True)
class ContendedPlan:
    workers: int
    cycles: int
    max_seconds: float
    hold_s: float


# -- uncontended -----------------------------------------------------------------------------
def _uncontended_figures(sample: Sample, timeouts: int) -> dict[str, float]:
    return {**sample.figures(), "timeouts": float(timeouts)}


async def uncontended_async(handle: AsyncHandle, n: int, max_seconds: float) -> dict[str, float]:
    """``n`` acquire/release cycles on one task; latency is the whole cycle."""
    for _ in range(3):
        if await handle.acquire():
            await handle.release()
    latencies: list[int] = []
    timeouts = 0
    settle_gc()
    started = now_ns()
    deadline = started + int(max_seconds * 1e9)
    for _ in range(n):
        t0 = now_ns()
        if await handle.acquire():
            await handle.release()
        else:
            timeouts += 1
        t1 = now_ns()
        latencies.append(t1 - t0)
        if t1 > deadline:
            break
    return _uncontended_figures(Sample(len(latencies), now_ns() - started, latencies), timeouts)


def _uncontended_sync(handle: SyncHandle, n: int, max_seconds: float) -> dict[str, float]:
    for _ in range(3):
        if handle.acquire():
            handle.release()
    latencies: list[int] = []
    timeouts = 0
    settle_gc()
    started = now_ns()
    deadline = started + int(max_seconds * 1e9)
    for _ in range(n):
        t0 = now_ns()
        if handle.acquire():
            handle.release()
        else:
            timeouts += 1
        t1 = now_ns()
        latencies.append(t1 - t0)
        if t1 > deadline:
            break
    return _uncontended_figures(Sample(len(latencies), now_ns() - started, latencies), timeouts)


async def uncontended_sync(handle: SyncHandle, n: int, max_seconds: float) -> dict[str, float]:
    """Like :func:`uncontended_async`, in a worker thread for a blocking library."""
    return await asyncio.to_thread(_uncontended_sync, handle, n, max_seconds)


# -- contended -------------------------------------------------------------------------------
async def contended_async(handles: Sequence[AsyncHandle], plan: ContendedPlan) -> dict[str, float]:
    """``plan.workers`` tasks, each looping acquire -> critical section -> release."""
    log = _log(plan)

    async def worker(number: int, handle: AsyncHandle) -> None:
        while log.more():
            waited_from = now_ns()
            if not await handle.acquire():
                log.timed_out()
                continue
            cycle = log.enter(number, waited_from)
            try:
                # The critical section yields, so an intruder would be caught inside it.
                await asyncio.sleep(plan.hold_s)
            finally:
                log.leave(cycle)
                await handle.release()

    settle_gc()
    started = now_ns()
    async with asyncio.timeout(plan.max_seconds + ACQUIRE_TIMEOUT_S + 30):
        async with asyncio.TaskGroup() as group:
            for n, h in enumerate(handles):
                group.create_task(worker(n, h))
    return log.figures(now_ns() - started)


async def contended_sync(handles: Sequence[SyncHandle], plan: ContendedPlan) -> dict[str, float]:
    """Like :func:`contended_async`, one thread per worker for a blocking library."""
    log = _log(plan)
    errors: list[BaseException] = []

    def worker(number: int, handle: SyncHandle) -> None:
        try:
            while log.more():
                waited_from = now_ns()
                if not handle.acquire():
                    log.timed_out()
                    continue
                cycle = log.enter(number, waited_from)
                try:
                    time.sleep(plan.hold_s)
                finally:
                    log.leave(cycle)
                    handle.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(n, h), name=f"bench-worker-{n}", daemon=True)
        for n, h in enumerate(handles)
    ]
    settle_gc()
    started = now_ns()
    for thread in threads:
        thread.start()
    await asyncio.to_thread(_join_all, threads, plan.max_seconds + ACQUIRE_TIMEOUT_S + 30)
    wall = now_ns() - started
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError("contended workers did not finish in time")
    return log.figures(wall)


def _join_all(threads: Sequence[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _log(plan: ContendedPlan) -> CriticalSections:
    return CriticalSections(
        workers=plan.workers,
        target=plan.cycles,
        deadline_ns=now_ns() + int(plan.max_seconds * 1e9),
    )
