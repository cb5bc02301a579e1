"""The workload the Redis fault tests run while Cluster slots move or a master dies, and while
Sentinel fails over.

Store workers increment counters and record each acknowledged increment; lock workers acquire,
hold briefly and release, recording each hold (its interval and fencing token); every call's
outcome is an :class:`Op`. :func:`summarize` computes what the tests judge and print: errors,
overlapping holds, fencing inversions, acknowledged increments missing afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import lockyard
from lockyard import LockExpiredError, LockTimeoutError


@dataclass
class Op:
    kind: str
    key: str
    start: float
    end: float
    error: BaseException | None = None


@dataclass
class Hold:
    name: str
    token: int
    acquired: float
    ended: float
    outcome: str  # released | lost | unknown


@dataclass
class Run:
    origin: float = field(default_factory=time.monotonic)
    ops: list[Op] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    acked: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: The most the event loop woke a task late during the run (see :meth:`watch_loop_lag`).
    loop_lag: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.origin

    async def watch_loop_lag(self, tick: float = 0.02) -> None:
        """Record how late a short sleep wakes until the run stops. An operation whose timeout
        fired can finish that much later on a loaded machine: its bound allows for it."""
        while not self.stop.is_set():
            asked = time.monotonic()
            await asyncio.sleep(tick)
            self.loop_lag = max(self.loop_lag, time.monotonic() - asked - tick)

    def errors(self) -> list[Op]:
        return [op for op in self.ops if op.error is not None]


async def store_worker(
    run: Run, ly: lockyard.Connection, key: str, *, read_back: bool = False
) -> None:
    """Increment ``key`` again and again; each acknowledged increment is counted. With
    ``read_back``, each increment is followed by a read (reads must also move to a new master)."""
    while not run.stop.is_set():
        start = run.now()
        try:
            await ly.store.increment(key, 1)
            run.acked[key] += 1
            if read_back:
                await ly.store.get_versioned(key)
            run.ops.append(Op("store", key, start, run.now()))
        except Exception as exc:
            run.ops.append(Op("store", key, start, run.now(), exc))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.002)


async def lock_worker(
    run: Run, ly: lockyard.Connection, name: str, *, ttl: float, timeout: float
) -> None:
    """Acquire ``name``, hold it 10 ms, release; again until stopped."""
    while not run.stop.is_set():
        start = run.now()
        try:
            guard = await ly.locks.acquire(name, ttl, timeout=timeout)
        except Exception as exc:
            run.ops.append(Op("acquire", name, start, run.now(), exc))
            if not isinstance(exc, LockTimeoutError):
                await asyncio.sleep(0.01)
            continue
        acquired = run.now()
        run.ops.append(Op("acquire", name, start, acquired))
        await asyncio.sleep(0.01)
        outcome = "released"
        release_start = run.now()
        try:
            await guard.release()
        except LockExpiredError:
            outcome = "lost"
        except Exception as exc:
            outcome = "unknown"
            run.ops.append(Op("release", name, release_start, run.now(), exc))
        # The hold counts from its acquire's return to its release's start: inside the time the
        # server granted it, so two such intervals overlapping is a real double grant.
        run.holds.append(Hold(name, guard.fencing_token, acquired, release_start, outcome))


@dataclass
class Summary:
    overlaps: int
    inversions: int
    lost_holds: int
    lost_increments: int
    acked_increments: int


async def summarize(run: Run, ly: lockyard.Connection) -> Summary:
    """Overlapping holds and fencing inversions per lock; acknowledged increments missing."""
    by_name: dict[str, list[Hold]] = {}
    for hold in run.holds:
        by_name.setdefault(hold.name, []).append(hold)
    overlaps = inversions = 0
    for holds in by_name.values():
        holds.sort(key=lambda h: h.acquired)
        for i, first in enumerate(holds):
            overlaps += sum(1 for second in holds[i + 1 :] if second.acquired < first.ended)
        highest = 0
        for hold in holds:
            inversions += hold.token <= highest
            highest = max(highest, hold.token)
    lost_increments = 0
    for key, count in run.acked.items():
        value = await ly.store.get(key)
        lost_increments += max(0, count - int(value or 0))
    return Summary(
        overlaps=overlaps,
        inversions=inversions,
        lost_holds=sum(1 for hold in run.holds if hold.outcome == "lost"),
        lost_increments=lost_increments,
        acked_increments=sum(run.acked.values()),
    )
