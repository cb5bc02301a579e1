"""The memory backend's permit tables (semaphores, read-write locks) and fenced writes.

As in :mod:`lockyard.backends.memory`, every operation runs without an ``await`` between its
read and its write, so it is atomic on the event loop, and deadlines are whole milliseconds of
the injectable clock. Per name: the limit and fencing counter (kept for ever, like a lock's),
the live holders, and the waiters in arrival order (owner -> waiter deadline and weight).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lockyard.clock import Clock
from lockyard.fenced_writes import Fence, FencedWrites, fence_lost
from lockyard.operations import OperationRunner
from lockyard.permits import HolderInfo, PermitAttempt, PermitTable, fitting_waiters
from lockyard.signals import ReleaseSignals
from lockyard.store import CasResult, StateStore


@dataclass(slots=True)
class _Holder:
    weight: int
    deadline_ms: int
    fencing_token: int


@dataclass(slots=True)
class _Waiter:
    weight: int
    deadline_ms: int


@dataclass(slots=True)
class _Permits:
    limit: int
    counter: int = 0
    holders: dict[str, _Holder] = field(default_factory=dict)
    #: In arrival order (dicts keep insertion order).
    queue: dict[str, _Waiter] = field(default_factory=dict)


class MemoryPermits(PermitTable):
    def __init__(
        self, runner: OperationRunner, space: str, clock: Clock, signals: ReleaseSignals
    ) -> None:
        super().__init__(runner, space, clock, signals)
        self._signals = signals
        self._names: dict[str, _Permits] = {}

    def _now_ms(self) -> int:
        return int(self.clock.monotonic() * 1000)

    def _pruned(self, name: str, now: int) -> _Permits | None:
        """The state of ``name`` with expired holders and waiters dropped."""
        state = self._names.get(name)
        if state is None:
            return None
        for owner in [o for o, h in state.holders.items() if h.deadline_ms <= now]:
            del state.holders[owner]
        for owner in [o for o, w in state.queue.items() if w.deadline_ms <= now]:
            del state.queue[owner]
        return state

    def holds(self, name: str, owner: str) -> bool:
        """Whether ``owner`` holds a live permit of ``name`` (fenced writes ask this)."""
        state = self._names.get(name)
        holder = None if state is None else state.holders.get(owner)
        return holder is not None and holder.deadline_ms > self._now_ms()

    def _signal(self, name: str, state: _Permits) -> None:
        used = sum(h.weight for h in state.holders.values())
        waiters = [(owner, w.weight) for owner, w in state.queue.items()]
        for owner in fitting_waiters(used, state.limit, waiters):
            self._signals.wake(self.signal_name(name), owner)

    def clear(self) -> None:
        """Forget every name (``purge``); waiters re-attempt."""
        self._names.clear()
        self._signals.wake_all()

    def sweep(self) -> None:
        now = self._now_ms()
        for name in list(self._names):
            self._pruned(name, now)

    async def _acquire(
        self,
        name: str,
        owner: str,
        weight: int,
        limit: int,
        ttl_ms: int,
        wait_ms: int | None,
        count_queue: bool,
    ) -> PermitAttempt:
        now = self._now_ms()
        state = self._pruned(name, now)
        if state is None:
            state = self._names[name] = _Permits(limit)
        elif state.limit != limit:
            return PermitAttempt(None, limit_conflict=state.limit)
        used = sum(h.weight for h in state.holders.values())
        ahead = 0
        if wait_ms is not None or count_queue:
            for waiter_owner, waiter in state.queue.items():
                if waiter_owner == owner:
                    break
                ahead += waiter.weight
        if used + ahead + weight <= limit:
            state.counter += 1
            state.holders[owner] = _Holder(weight, now + ttl_ms, state.counter)
            state.queue.pop(owner, None)
            return PermitAttempt(state.counter)
        if state.holders:
            retry_after = min(h.deadline_ms for h in state.holders.values()) - now
        else:
            retry_after = next(iter(state.queue.values())).deadline_ms - now
        if wait_ms is None:
            return PermitAttempt(None, retry_after_ms=retry_after)
        entry = state.queue.get(owner)
        if entry is None:
            state.queue[owner] = _Waiter(weight, now + wait_ms)
        else:
            entry.deadline_ms = now + wait_ms  # keeps its place
        return PermitAttempt(None, retry_after_ms=retry_after, queued=True)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        if not self.holds(name, owner):
            return False
        self._names[name].holders[owner].deadline_ms = self._now_ms() + ttl_ms
        return True

    async def _release(self, name: str, owner: str) -> bool:
        if not self.holds(name, owner):
            return False
        state = self._names[name]
        del state.holders[owner]
        self._pruned(name, self._now_ms())
        self._signal(name, state)
        return True

    async def _is_held(self, name: str, owner: str) -> bool:
        return self.holds(name, owner)

    async def _leave_queue(self, name: str, owner: str) -> None:
        state = self._pruned(name, self._now_ms())
        if state is not None and state.queue.pop(owner, None) is not None:
            self._signal(name, state)

    async def _list_held(self) -> list[HolderInfo]:
        now = self._now_ms()
        return [
            HolderInfo(name, owner, h.fencing_token, h.deadline_ms - now, h.weight, state.limit)
            for name in list(self._names)
            if (state := self._pruned(name, now)) is not None
            for owner, h in state.holders.items()
        ]


class MemoryFencedWrites(FencedWrites):
    """Check the lease, then write, with no ``await`` in between (atomic on the loop)."""

    def __init__(
        self,
        store: StateStore,
        tables: dict[str, MemoryPermits],
        lock_held: Callable[[str, str], bool],
    ) -> None:
        self._store = store
        self._tables = tables
        self._lock_held = lock_held

    def _check(self, fence: Fence, operation: str, key: str) -> None:
        if fence.kind == "lock":
            held = self._lock_held(fence.name, fence.owner)
        else:
            held = self._tables[fence.kind].holds(fence.name, fence.owner)
        if not held:
            raise fence_lost(fence, operation, key)

    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        self._check(fence, "check_and_set", key)
        return await self._store._check_and_set(key, value, ttl_ms)

    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None:
        self._check(fence, "set", key)
        await self._store._set(key, value, ttl_ms)

    async def delete(self, fence: Fence, key: str) -> bool:
        self._check(fence, "delete", key)
        return await self._store._delete(key)

    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int:
        self._check(fence, "increment", key)
        return await self._store._increment(key, delta, ttl_ms)

    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        self._check(fence, "compare_and_swap", key)
        return await self._store._compare_and_swap(key, expected_version, new_value, ttl_ms)

    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        self._check(fence, f"index_{index}", key)
        await self._store._index_add(index, key, at_ms)

    async def index_remove(self, fence: Fence, index: str, key: str) -> None:
        self._check(fence, f"remove_{index}_index", key)
        await self._store._index_remove(index, key)
