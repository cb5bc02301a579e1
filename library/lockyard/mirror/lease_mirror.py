"""The pacing worker of the Lease mirror: every lock a handle holds, mirrored into a Lease,
without ever being in the way of a lock operation.

:class:`LeaseMirror` is a :class:`~lockyard.locks.LockObserver` and a
:class:`~lockyard.permits.PermitObserver` (one Lease per semaphore permit or read-write lock
holder, keyed by :func:`~lockyard.mirror.lease_names.permit_key`). Its callbacks run inside
``acquire``/``extend``/``release`` and only record the lock's latest state (a dict entry) and
set an event: no await, no I/O. One asyncio task takes those states in rounds, paces them
(coalescing per lock, rewriting an existing Lease at most every ``rewrite_interval``, a token
bucket of ``max_writes_per_second``, jittered backoff after a failed round) and hands each lock
to the :class:`~lockyard.mirror.lease_writer.LeaseWriter`, whose calls run in the mirror's own
API thread. Why each rule exists, and what it costs: docs/leases.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
from dataclasses import asdict, dataclass

from lockyard._resource import AsyncResource
from lockyard.clock import Clock
from lockyard.identity import ELECTION_LOCK_PREFIX
from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard.locks import LockGuard
from lockyard.mirror.holder import Holder
from lockyard.mirror.lease_names import permit_key
from lockyard.mirror.lease_writer import (
    LeaseState,
    LeaseWriter,
    MirroredGuard,
    Step,
    Superseded,
)
from lockyard.permits import PermitGuard

log = logging.getLogger("lockyard.mirror")

DEFAULT_FLUSH_INTERVAL_S = 0.1
DEFAULT_MAX_WRITES_PER_SECOND = 50.0
DEFAULT_MAX_LOCKS = 10_000
#: A Lease that exists is rewritten (renewed, handed over, deleted) at most this often, or every
#: third of the lock's TTL if that is shorter.
DEFAULT_REWRITE_INTERVAL_S = 1.0
DEFAULT_CLOSE_TIMEOUT_S = 2.0
BACKOFF_INITIAL_S = 0.2
BACKOFF_CAP_S = 5.0
#: Read-modify-write races one lock may lose in one round before it waits for the next.
MAX_STEPS = 6


@dataclass(slots=True)
class MirrorMetrics:
    """Counters of one mirror's work (plain integers; read them at any time)."""

    #: API writes that succeeded (create, replace, delete).
    written: int = 0
    #: API calls that failed (each failed round counts one).
    failed: int = 0
    #: Locks attempted again after a failed round.
    retried: int = 0
    #: Lock events folded into a newer state before the older one was written.
    coalesced: int = 0
    #: Lock states never mirrored: the queue was full, the API rejected a Lease for good, or the
    #: mirror closed before it could write them.
    dropped: int = 0
    #: Lease names found taken by another lock (hash collisions); the lock moved to a new name.
    collisions: int = 0
    #: Leases left alone because a newer acquisition (higher fencing token) already owned them.
    superseded: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True, eq=False)
class _Slot(LeaseState):
    """One lock's latest known state here (and, inherited, what the writer knows of its Lease)."""

    guard: MirroredGuard | None = None
    #: Newest fencing token seen for this lock in this process.
    fencing: int = 0
    acquired_at: float = 0.0
    released: bool = False
    #: Acquisitions with a token <= floor were found superseded by a newer holder's Lease.
    floor: int = 0
    failures: int = 0
    #: Loop time of this mirror's last write of the lock's Lease.
    written_at: float = -math.inf


class LeaseMirror(AsyncResource):
    """A lock observer that mirrors a handle's held locks into Leases (see the module docs).

    Create it with :func:`lockyard.mirror.enable_lease_mirroring`. ``metrics`` counts its work;
    ``flush()`` waits until every queued state is written; ``close()`` flushes (bounded) and
    stops, closing ``api``.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        store: str,
        namespace: str,
        backend: str,
        clock: Clock,
        holder: Holder | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        max_writes_per_second: float = DEFAULT_MAX_WRITES_PER_SECOND,
        max_locks: int = DEFAULT_MAX_LOCKS,
        rewrite_interval: float = DEFAULT_REWRITE_INTERVAL_S,
    ) -> None:
        if flush_interval < 0 or max_writes_per_second <= 0 or max_locks < 1:
            raise ValueError("flush_interval >= 0, max_writes_per_second > 0, max_locks >= 1")
        self.rewrite_interval = rewrite_interval
        self.api = api
        self.store = store
        self.namespace = namespace
        self.backend = backend
        self.flush_interval = flush_interval
        self.max_writes_per_second = max_writes_per_second
        self.max_locks = max_locks
        self._writer = LeaseWriter(
            api, store, namespace, backend=backend, holder=holder, pace=self._take_token
        )
        self.holder = self._writer.holder
        self._metrics = MirrorMetrics()
        self._clock = clock
        #: Lock events not yet seen by the worker: name -> (guard, held, acquired_at or None).
        #: The observer callbacks touch nothing else, so they stay a few dict operations.
        self._pending: dict[str, tuple[MirroredGuard, bool, float | None]] = {}
        self._pending_limit = max_locks
        self._coalesced = 0
        self._dropped = 0
        self._slots: dict[str, _Slot] = {}
        #: Locks the worker must sync although no new event came (failed, raced, expired).
        self._todo: dict[str, None] = {}
        #: The round in flight: its locks, and the index of the one being written.
        self._round_names: list[str] = []
        self._round_index = 0
        self._expiries: list[tuple[float, str, int]] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._round_waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._busy = False
        self._loop = asyncio.get_running_loop()
        self._last_round = -math.inf
        self._tokens = max_writes_per_second
        self._tokens_at = self._loop.time()
        self._backoff = 0.0
        self._worker = asyncio.create_task(self._work(), name=f"lockyard-lease-mirror:{store}")

    def __repr__(self) -> str:
        return f"<LeaseMirror store={self.store!r} namespace={self.namespace!r}>"

    # -- LockObserver and PermitObserver: synchronous, a few dict operations, no network ----
    # Kept flat on purpose: they run inside every acquire, extend and release.
    def lock_acquired(self, guard: LockGuard) -> None:
        self._acquired(guard.name, guard)

    def lock_extended(self, guard: LockGuard) -> None:
        self._extended(guard.name, guard)

    def lock_released(self, guard: LockGuard) -> None:
        self._released(guard.name, guard)

    def permit_acquired(self, guard: PermitGuard) -> None:
        self._acquired(permit_key(guard.space, guard.name, guard.fencing_token), guard)

    def permit_extended(self, guard: PermitGuard) -> None:
        self._extended(permit_key(guard.space, guard.name, guard.fencing_token), guard)

    def permit_released(self, guard: PermitGuard) -> None:
        self._released(permit_key(guard.space, guard.name, guard.fencing_token), guard)

    def _acquired(self, key: str, guard: MirroredGuard) -> None:
        pending = self._pending
        previous = pending.get(key)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return  # late news of an older acquisition
            self._coalesced += 1
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        pending[key] = (guard, True, guard.renewed_at)
        self._wake.set()

    def _extended(self, key: str, guard: MirroredGuard) -> None:
        pending = self._pending
        previous = pending.get(key)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return
            self._coalesced += 1
            pending[key] = (guard, True, previous[2] if previous[0] is guard else None)
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        else:
            pending[key] = (guard, True, None)
        self._wake.set()

    def _released(self, key: str, guard: MirroredGuard) -> None:
        pending = self._pending
        previous = pending.get(key)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return
            self._coalesced += 1
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        pending[key] = (guard, False, None)
        self._wake.set()

    # -- public ----------------------------------------------------------------------------
    @property
    def metrics(self) -> MirrorMetrics:
        """The counters (the callbacks and the writer keep three of them apart)."""
        self._metrics.coalesced = self._coalesced
        self._metrics.dropped = self._dropped
        self._metrics.collisions = self._writer.collisions
        return self._metrics

    @property
    def pending(self) -> int:
        """Locks whose latest state is not written yet (the round in flight's included)."""
        unfinished = self._round_names[self._round_index :]
        return len(self._pending.keys() | self._todo.keys() | set(unfinished))

    @property
    def closed(self) -> bool:
        return self._closed

    async def flush(self) -> None:
        """Wait until every queued state is written (forever while the API is down)."""
        while self._pending or self._todo or self._busy:
            waiter = self._loop.create_future()
            self._round_waiters.append(waiter)
            await waiter

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop; idempotent.

        Locks still held keep their Leases, which expire with them (and the reaper removes).
        """
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.flush()
        self._pending_limit = 0  # from now on every event is dropped
        self._dropped += self.pending
        self._stopping.set()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._wake_round_waiters()
        await self.api.close()

    # -- the worker ------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            await self._wait_for_work()
            delay = self._last_round + self.flush_interval - self._loop.time()
            if delay > 0 and not self._closed:
                await asyncio.sleep(delay)
            self._last_round = self._loop.time()
            self._busy = True
            try:
                await self._round()
            finally:
                self._busy = False
                self._wake_round_waiters()
            if self._backoff:
                await self._pause(self._backoff)

    def _wake_round_waiters(self) -> None:
        waiters, self._round_waiters = self._round_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_work(self) -> None:
        while True:
            self._due_expiries()
            if self._pending or self._todo:
                return
            self._wake.clear()
            self._wake_round_waiters()
            timeout = None
            if self._expiries:
                timeout = max(0.0, self._expiries[0][0] - self._clock.wall())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _due_expiries(self) -> None:
        """Queue Leases whose guard's lease ran out without an extend or release."""
        now = self._clock.wall()
        while self._expiries and self._expiries[0][0] <= now:
            _, lock, token = heapq.heappop(self._expiries)
            slot = self._slots.get(lock)
            if slot is not None and slot.fencing == token and self._desired(slot, now) is None:
                self._todo[lock] = None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _take_events(self) -> list[str]:
        """Fold the pending events into the slots; the locks to sync this round."""
        events, self._pending = self._pending, {}
        for lock, (guard, held, acquired_at) in events.items():
            slot = self._slots.get(lock)
            if slot is None:
                if not held:
                    continue  # never mirrored (dropped earlier): nothing to undo
                if len(self._slots) >= self.max_locks:
                    self._dropped += 1
                    continue
                slot = self._slots[lock] = _Slot(lock)
            token = guard.fencing_token
            if token < slot.fencing or token <= slot.floor:
                continue  # late news of an older acquisition
            if token > slot.fencing:
                slot.fencing = token
                slot.guard = guard
                slot.acquired_at = guard.renewed_at if acquired_at is None else acquired_at
            elif acquired_at is not None:
                slot.acquired_at = acquired_at
            slot.released = not held
            self._todo[lock] = None
        names = list(self._todo)
        self._todo.clear()
        return names

    async def _round(self) -> None:
        self._round_names, self._round_index = self._take_events(), 0
        try:
            await self._write_round(self._round_names)
        finally:
            self._round_names = []

    async def _write_round(self, names: list[str]) -> None:
        for index, lock in enumerate(names):
            self._round_index = index
            slot = self._slots.get(lock)
            if slot is None:
                continue
            if self._too_soon(slot):
                self._todo[lock] = None
                continue
            if slot.failures:
                self._metrics.retried += 1
            try:
                await self._sync(slot)
            except KubeApiError as exc:
                self._metrics.failed += 1
                if exc.transient:
                    slot.failures += 1
                    for name in names[index:]:
                        self._todo[name] = None
                    if not self._backoff:
                        log.warning(
                            "lease mirror for store %s/%s: API call failed (%s); retrying with "
                            "backoff, lock operations are unaffected",
                            self.namespace,
                            self.store,
                            exc,
                        )
                    self._backoff = min(
                        BACKOFF_CAP_S, max(BACKOFF_INITIAL_S, self._backoff * 2)
                    ) * random.uniform(0.75, 1.0)
                    return
                # Rejected for good (invalid object, ...): retrying the same write cannot help.
                log.error("lease mirror: lock %r of %s not mirrored: %s", lock, self.store, exc)
                self._dropped += 1
                self._slots.pop(lock, None)
                continue
            slot.failures = 0
            if self._backoff:
                log.info("lease mirror for %s/%s: API calls work again", self.namespace, self.store)
                self._backoff = 0.0
            if (
                slot.rv is None
                and not slot.unsure
                and lock not in self._todo
                and lock not in self._pending
                and self._desired(slot, self._clock.wall()) is None
            ):
                del self._slots[lock]

    # -- one lock --------------------------------------------------------------------------
    def _too_soon(self, slot: _Slot) -> bool:
        """Whether rewriting this lock's existing Lease must wait (a hot lock: see the docs).

        A Lease that does not exist yet is always written at once: a lock appears promptly.
        """
        if slot.rv is None or self._closed:
            return False
        spacing = self.rewrite_interval
        if slot.guard is not None:
            spacing = min(spacing, slot.guard.lease_ms / 3000)  # never skip a renewal
        return self._loop.time() - slot.written_at < spacing

    def _desired(self, slot: _Slot, now: float) -> MirroredGuard | None:
        """The guard whose Lease should exist now, or ``None`` for no Lease."""
        guard = slot.guard
        if (
            guard is None
            or slot.released
            or guard.released
            or guard.lost.is_set()
            or slot.fencing <= slot.floor
            or now >= guard.renewed_at + guard.lease_ms / 1000
        ):
            return None
        return guard

    async def _sync(self, slot: _Slot) -> None:
        for _ in range(MAX_STEPS):
            guard = self._desired(slot, self._clock.wall())
            try:
                if guard is None and slot.lock.startswith(ELECTION_LOCK_PREFIX):
                    step = await self._writer.write_released(slot, slot.fencing)
                elif guard is None:
                    step = await self._writer.write_absent(slot, slot.fencing)
                else:
                    step = await self._writer.write_held(slot, guard, slot.acquired_at)
            except Superseded as exc:
                if guard is not None:
                    slot.floor = max(slot.floor, exc.fencing_token)
                self._metrics.superseded += 1
                return
            if step is Step.WRITTEN:
                self._metrics.written += 1
                slot.written_at = self._loop.time()
                if guard is not None:
                    deadline = guard.renewed_at + guard.lease_ms / 1000
                    heapq.heappush(self._expiries, (deadline, slot.lock, guard.fencing_token))
            if step is not Step.AGAIN:
                return
        self._todo[slot.lock] = None  # lost every race this round; try again next round

    async def _take_token(self) -> None:
        rate = self.max_writes_per_second
        while True:
            now = self._loop.time()
            self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / rate)
