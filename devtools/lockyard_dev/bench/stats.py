"""Timing and statistics: latency samples in, ops/s and percentiles out, spreads across passes.

Every operation is timed on its own with ``time.perf_counter_ns``. A run stops after ``n``
operations or ``max_seconds``, whichever comes first, so a slow backend bounds the benchmark's
length instead of the iteration count. Percentiles are nearest-rank; ops/s is completed
operations over the run's wall time (for concurrent runs: from the first task's start to the
last task's end).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

#: Metric names used throughout: latency figures are milliseconds.
OPS_PER_S = "ops_per_s"
P50_MS = "p50_ms"
P99_MS = "p99_ms"
#: The Lease-mirroring probe: milliseconds from an acquisition to its Lease being readable.
VISIBLE_P50_MS = "visible_p50_ms"
VISIBLE_P99_MS = "visible_p99_ms"

NAN = float("nan")


def settle_gc() -> None:
    """Collect, then freeze what survives, before a timed run.

    A full collection in this process takes 40-70 ms (every object the run set up is scanned
    again); during a contended run it stalls all the waiters at once and becomes the p99.
    Frozen objects are never scanned again, so only the run's own garbage is collected. Every
    library, Lockyard and peers alike, is measured after this.
    """
    gc.collect()
    gc.freeze()


def now_ns() -> int:
    return time.perf_counter_ns()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return NAN
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: how many operations completed, in how long, and each one's latency."""

    ops: int
    wall_ns: int
    latencies_ns: list[int]

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ns)
        return {
            OPS_PER_S: self.ops / (self.wall_ns / 1e9) if self.wall_ns > 0 else NAN,
            P50_MS: percentile(ordered, 50) / 1e6,
            P99_MS: percentile(ordered, 99) / 1e6,
        }


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure across passes: the median, with the lowest and highest pass."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(NAN, NAN, NAN)
        return cls(statistics.median(finite), min(finite), max(finite))


Op = Callable[[int, int], Awaitable[object]]
"""One timed operation: called with the operation's index and the calling task's number."""


async def warm_up(op: Op, count: int) -> None:
    """Run ``count`` untimed operations (scripts loaded, statements prepared, pools filled)."""
    for i in range(count):
        await op(-1 - i, 0)


async def time_sequential(op: Op, n: int, max_seconds: float) -> Sample:
    """``op`` ``n`` times, one after another, on one task."""
    latencies: list[int] = []
    settle_gc()
    started = now_ns()
    deadline = started + int(max_seconds * 1e9)
    for i in range(n):
        t0 = now_ns()
        await op(i, 0)
        t1 = now_ns()
        latencies.append(t1 - t0)
        if t1 > deadline:
            break
    return Sample(len(latencies), now_ns() - started, latencies)


async def time_interleaved(ops: Sequence[Op], n: int, max_seconds: float) -> list[Sample]:
    """Each of ``ops`` ``n`` times on one task, taking turns call by call.

    Two runs timed one after the other see different moments of the machine (a timer tick, a
    neighbour's burst, the CPU's clock): on a 2-core machine their p50s moved by up to 30 %
    between passes while the work did not change. Taking turns gives every op the same moments,
    so a ratio of their p50s measures the ops and not the order they ran in. Who goes first
    alternates, so neither always follows the other. Each sample's wall time is the sum of its
    own calls.
    """
    latencies: list[list[int]] = [[] for _ in ops]
    settle_gc()
    deadline = now_ns() + int(max_seconds * 1e9)
    order = list(enumerate(ops))
    for i in range(n):
        for slot, op in order if i % 2 == 0 else reversed(order):
            t0 = now_ns()
            await op(i, 0)
            latencies[slot].append(now_ns() - t0)
        if now_ns() > deadline:
            break
    return [Sample(len(own), sum(own), own) for own in latencies]


async def time_concurrent(op: Op, n: int, tasks: int, max_seconds: float) -> Sample:
    """``n`` operations shared by ``tasks`` concurrent tasks on the event loop."""
    counter = itertools.count()
    latencies: list[int] = []
    settle_gc()
    started = now_ns()
    deadline = started + int(max_seconds * 1e9)

    async def worker(task: int) -> None:
        while (i := next(counter)) < n:
            t0 = now_ns()
            await op(i, task)
            t1 = now_ns()
            latencies.append(t1 - t0)
            if t1 > deadline:
                return

    # A TaskGroup: when one call fails, the other tasks are cancelled, not left running.
    async with asyncio.TaskGroup() as group:
        for t in range(tasks):
            group.create_task(worker(t))
    return Sample(len(latencies), now_ns() - started, latencies)
