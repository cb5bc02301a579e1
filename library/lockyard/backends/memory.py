"""The in-process backend: the executable contract every other backend is checked against.

All state lives in this process; every operation runs without an ``await`` between its read and
its write, so it is atomic on the event loop (safe under any number of concurrent tasks, not
across threads or processes). Deadlines use the injectable clock's monotonic time in whole
milliseconds. A background task reclaims expired keys and locks through a deadline heap, so
memory does not grow with keys nobody touches again. The two time indexes are sorted lists
(``sortedcontainers``): O(log N) to add or remove, O(log N + M) to read what is due.

Locks: a lease per name plus, per name, a FIFO queue of waiters (an insertion-ordered dict of
owner -> waiter deadline). A waiting attempt takes a free lock only when no live waiter is ahead
of it; a release (or break, or a lease found expired) wakes the head of the queue directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import defaultdict
from dataclasses import dataclass

from sortedcontainers import SortedList

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import MemoryConfig
from lockyard.guarantees import Guarantees
from lockyard.keys import kind_of
from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import OperationRunner, default_translate
from lockyard.rwlocks import ReadWriteLocks
from lockyard.semaphores import Semaphores
from lockyard.signals import ReleaseSignals
from lockyard.store import CasResult, StateStore, checked_sum, parse_counter

from .memory_permits import MemoryFencedWrites, MemoryPermits

SWEEP_INTERVAL_S = 0.1

GUARANTEES = Guarantees(
    mutual_exclusion="within one process only",
    failover_safety="not applicable: nothing survives the process",
    fencing="per-name counter, strictly increasing, never reused",
    ttl_precision="1 ms",
    clock="the process's monotonic clock",
    fifo_waiters=True,
)


@dataclass(slots=True)
class _Entry:
    value: str
    version: int
    deadline_ms: int | None


@dataclass(slots=True)
class _Lease:
    owner: str
    deadline_ms: int
    fencing_token: int


class _Clocked:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock.monotonic() * 1000)

    def _deadline(self, ttl_ms: int | None) -> int | None:
        return None if ttl_ms is None else self._now_ms() + ttl_ms


class MemoryStateStore(_Clocked, StateStore):
    def __init__(self, runner: OperationRunner, clock: Clock, locks: MemoryLocks) -> None:
        StateStore.__init__(self, runner)
        _Clocked.__init__(self, clock)
        self._locks = locks
        #: Also emptied by ``purge`` (the permit tables of the backend).
        self.purge_also: list[MemoryPermits] = []
        self._data: dict[str, _Entry] = {}
        self._by_kind: defaultdict[str, set[str]] = defaultdict(set)
        self._expiries: list[tuple[int, str]] = []
        self._indexes: dict[str, tuple[dict[str, int], SortedList[tuple[int, str]]]] = {
            "timeout": ({}, SortedList()),
            "chain": ({}, SortedList()),
        }

    # -- helpers ---------------------------------------------------------------------------
    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.deadline_ms is not None and entry.deadline_ms <= self._now_ms():
            self._drop(key)
            return None
        return entry

    def _drop(self, key: str) -> None:
        del self._data[key]
        members = self._by_kind.get(kind_of(key))
        if members is not None:
            members.discard(key)

    def _write(self, key: str, value: str, version: int, ttl_ms: int | None) -> _Entry:
        deadline = self._deadline(ttl_ms)
        entry = self._data.get(key)
        if entry is None:
            entry = self._data[key] = _Entry(value, version, deadline)
            self._by_kind[kind_of(key)].add(key)
        else:
            entry.value, entry.version, entry.deadline_ms = value, version, deadline
        if deadline is not None:
            heapq.heappush(self._expiries, (deadline, key))
        return entry

    def sweep(self) -> int:
        """Drop every key whose deadline has passed; returns how many."""
        now, dropped = self._now_ms(), 0
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            entry = self._data.get(key)
            if entry is not None and entry.deadline_ms is not None and entry.deadline_ms <= now:
                self._drop(key)
                dropped += 1
        return dropped

    # -- primitives ------------------------------------------------------------------------
    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        if self._live(key) is not None:
            return False
        self._write(key, value, 1, ttl_ms)
        return True

    async def _get(self, key: str) -> str | None:
        entry = self._live(key)
        return None if entry is None else entry.value

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        entry = self._live(key)
        return None if entry is None else (entry.value, entry.version)

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        entry = self._live(key)
        self._write(key, value, 1 if entry is None else entry.version + 1, ttl_ms)

    async def _delete(self, key: str) -> bool:
        if self._live(key) is None:
            return False
        self._drop(key)
        return True

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        entry = self._live(key)
        if entry is None:
            result = checked_sum(0, delta, key)
            self._write(key, str(result), 1, ttl_ms)
            return result
        result = checked_sum(parse_counter(entry.value, key), delta, key)
        if ttl_ms is None:
            entry.value, entry.version = str(result), entry.version + 1
        else:
            self._write(key, str(result), entry.version + 1, ttl_ms)
        return result

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        entry = self._live(key)
        if entry is None:
            return CasResult(ok=False, current_value=None, current_version=0)
        if entry.version != expected_version:
            return CasResult(ok=False, current_value=entry.value, current_version=entry.version)
        written = self._write(key, new_value, entry.version + 1, ttl_ms)
        return CasResult(ok=True, current_value=new_value, current_version=written.version)

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        return [
            (key, entry.value)
            for key in list(self._by_kind.get(kind, ()))
            if key.startswith(key_prefix) and (entry := self._live(key)) is not None
        ]

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        return [
            (key, entry.value)
            for key in list(self._by_kind.get(kind, ()))
            if (entry := self._live(key)) is not None
        ]

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        positions, ordered = self._indexes[index]
        previous = positions.get(key)
        if previous is not None:
            ordered.remove((previous, key))
        positions[key] = at_ms
        ordered.add((at_ms, key))

    async def _index_remove(self, index: str, key: str) -> None:
        positions, ordered = self._indexes[index]
        previous = positions.pop(key, None)
        if previous is not None:
            ordered.remove((previous, key))

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        _, ordered = self._indexes[index]
        # (now_ms, "\U0010ffff") sorts after every (now_ms, key): an inclusive upper bound.
        end = ordered.bisect_right((now_ms, "\U0010ffff"))
        return [key for _, key in ordered[:end]]

    async def _purge(self) -> int:
        count = len(self._data)
        self._data.clear()
        self._by_kind.clear()
        self._expiries.clear()
        for positions, ordered in self._indexes.values():
            positions.clear()
            ordered.clear()
        self._locks.clear()
        for table in self.purge_also:
            table.clear()
        return count


class MemoryLocks(_Clocked, DistributedLock):
    def __init__(self, runner: OperationRunner, clock: Clock) -> None:
        # Releases are signalled in-process: none is ever lost.
        self._signals = ReleaseSignals()
        DistributedLock.__init__(self, runner, clock, self._signals)
        _Clocked.__init__(self, clock)
        self._leases: dict[str, _Lease] = {}
        self._fencing: dict[str, int] = {}
        #: Per name, the waiters in arrival order: owner -> deadline of its waiter lease (ms).
        self._queues: dict[str, dict[str, int]] = {}

    def _live(self, name: str) -> _Lease | None:
        lease = self._leases.get(name)
        if lease is not None and lease.deadline_ms <= self._now_ms():
            del self._leases[name]
            self._signal(name)
            return None
        return lease

    def _head(self, name: str) -> tuple[str, int] | None:
        """The first live waiter of ``name`` and its deadline, dropping expired ones before it."""
        queue = self._queues.get(name)
        if queue is None:
            return None
        now = self._now_ms()
        while queue:
            owner = next(iter(queue))
            deadline = queue[owner]
            if deadline > now:
                return owner, deadline
            del queue[owner]
        del self._queues[name]
        return None

    def _signal(self, name: str) -> None:
        """The lock is free: wake the head of its queue (or every waiter, if none is queued)."""
        head = self._head(name)
        self._signals.wake(name, None if head is None else head[0])

    def clear(self) -> None:
        """Drop every lock, queue and fencing counter (``purge``), waking all waiters."""
        self._leases.clear()
        self._fencing.clear()
        self._queues.clear()
        self._signals.wake_all()

    def sweep(self) -> None:
        for name in [n for n, lease in self._leases.items() if lease.deadline_ms <= self._now_ms()]:
            self._live(name)
        now = self._now_ms()
        for name in [n for n, q in self._queues.items() if all(d <= now for d in q.values())]:
            del self._queues[name]

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        lease = self._live(name)
        head = None if wait_ms is None else self._head(name)
        if lease is None and (head is None or head[0] == owner):
            if head is not None:
                del self._queues[name][owner]
                if not self._queues[name]:
                    del self._queues[name]
            token = self._fencing.get(name, 0) + 1
            self._fencing[name] = token
            self._leases[name] = _Lease(owner, self._now_ms() + ttl_ms, token)
            return AcquireAttempt(token)
        now = self._now_ms()
        if lease is not None:
            retry_after_ms = lease.deadline_ms - now
        else:
            assert head is not None
            retry_after_ms = head[1] - now
        if wait_ms is None:
            return AcquireAttempt(None, retry_after_ms=retry_after_ms)
        # Join at the tail, or keep our place with a renewed waiter lease.
        self._queues.setdefault(name, {})[owner] = now + wait_ms
        return AcquireAttempt(None, retry_after_ms=retry_after_ms, queued=True)

    async def _leave_queue(self, name: str, owner: str) -> None:
        queue = self._queues.get(name)
        if queue is None or queue.pop(owner, None) is None:
            return
        if not queue:
            del self._queues[name]
        if self._live(name) is None:
            self._signal(name)

    def holds(self, name: str, owner: str) -> bool:
        """Whether ``owner`` holds a live lease of ``name`` (fenced writes ask this)."""
        lease = self._live(name)
        return lease is not None and lease.owner == owner

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        lease = self._live(name)
        if lease is None or lease.owner != owner:
            return False
        lease.deadline_ms = self._now_ms() + ttl_ms
        return True

    async def _release(self, name: str, owner: str) -> bool:
        lease = self._live(name)
        if lease is None or lease.owner != owner:
            return False
        del self._leases[name]
        self._signal(name)
        return True

    async def _is_held(self, name: str, owner: str) -> bool:
        lease = self._live(name)
        return lease is not None and lease.owner == owner

    async def _break(self, name: str) -> bool:
        if self._live(name) is None:
            return False
        del self._leases[name]
        self._signal(name)
        return True

    async def _holder(self, name: str) -> LockInfo | None:
        lease = self._live(name)
        if lease is None:
            return None
        return LockInfo(name, lease.owner, lease.fencing_token, lease.deadline_ms - self._now_ms())

    async def _list_held(self) -> list[LockInfo]:
        now = self._now_ms()
        return [
            LockInfo(name, lease.owner, lease.fencing_token, lease.deadline_ms - now)
            for name in list(self._leases)
            if (lease := self._live(name)) is not None
        ]


class MemoryBackend:
    """A fresh in-process store and lock manager, with its background sweeper."""

    name = "memory"
    guarantees = GUARANTEES

    def __init__(self, config: MemoryConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self._run = runner = OperationRunner(self.name, config.operation_timeout, default_translate)
        self.locks = MemoryLocks(runner, clock)
        self.store = MemoryStateStore(runner, clock, self.locks)
        tables = {
            space: MemoryPermits(runner, space, clock, self.locks._signals)
            for space in ("semaphore", "rwlock")
        }
        self.semaphores = Semaphores(tables["semaphore"])
        self.rwlocks = ReadWriteLocks(tables["rwlock"])
        self.store.purge_also.extend(tables.values())
        self.store.fenced_writes = MemoryFencedWrites(self.store, tables, self.locks.holds)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lockyard-memory-sweep")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.store.sweep()
            self.locks.sweep()
            for table in self.store.purge_also:
                table.sweep()

    async def ping(self) -> float:
        started = time.perf_counter()
        await asyncio.sleep(0)
        return time.perf_counter() - started

    async def server_version(self) -> str:
        from lockyard._version import __version__

        return f"lockyard-memory {__version__}"

    async def close(self) -> None:
        self._run.close()
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper


async def open_backend(config: MemoryConfig) -> MemoryBackend:
    return MemoryBackend(config)
