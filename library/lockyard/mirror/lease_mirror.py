"""Mirror every lock a handle holds into a ``coordination.k8s.io/v1`` Lease, without ever being
in the way of a lock operation.

How it stays out of the way:

- The mirror is a :class:`~lockyard.locks.LockObserver`. Its callbacks run synchronously inside
  ``acquire``/``extend``/``release`` and only update a dict entry (the lock's latest state) and
  set an event: O(1), no await, no I/O. A lock operation never waits for the API server, and an
  API server that is slow, down or refusing (403) cannot fail or delay one.
- One asyncio task (the worker) writes Leases. The official ``kubernetes`` client is blocking,
  so each call runs in the mirror's own single worker thread (``run_in_executor``, like
  ``asyncio.to_thread`` but closable without waiting), one call at a time, each with a timeout.
- Writes are coalesced per lock: the worker writes a lock's *latest* state, not every event. A
  lock taken and released between two rounds never reaches the API at all. Rounds start at most
  every ``flush_interval`` seconds (the first after a quiet spell starts at once). A Lease that
  does not exist yet is written in the next round, so a newly held lock appears promptly; one
  that exists is rewritten (renewed, handed over, deleted) at most every ``rewrite_interval``
  seconds, or every third of the lock's TTL if shorter, so a hot lock changing hands thousands
  of times a second costs about one write a second, and a released lock's Lease may outlive it
  by up to that long. API calls are capped at ``max_writes_per_second``. The mirror's CPU cost
  (its thread shares the GIL with the event loop) stays bounded however fast locks churn.
- A failed round (API unreachable, 403, 429, 5xx) is retried with capped, jittered exponential
  backoff; the locks stay queued with their latest state, so the mirror catches up when the API
  is back. The queue is bounded (``max_locks``); beyond it new locks are not mirrored (counted as
  dropped) rather than growing memory without limit.

What a Lease says (see :mod:`lockyard.mirror.lease_names` for its name and labels):
``holderIdentity`` is ``<pod or host>_<first 8 hex digits of the owner token>``;
``leaseDurationSeconds`` is the TTL rounded up to whole seconds (exact milliseconds in the
``lockyard.dev/lease-ms`` annotation); ``acquireTime`` is when this acquisition got the lock;
``renewTime`` is its latest extension (every ``extend``, hence every ``hold()`` renewal);
``leaseTransitions`` counts hand-overs the Lease witnessed: an acquisition that finds an earlier
acquisition's Lease still there (its release not yet mirrored, or its holder dead) takes it over
and adds one; a renewal keeps it.

Release *deletes* the Lease rather than clearing its holder: lock names are often unbounded
(``invoice-<id>``), and a Lease kept per name ever locked would grow etcd and ``kubectl get
leases`` forever. A Lease therefore exists while its lock is held (appearing within a round of
the acquisition, going within ``rewrite_interval`` of the release), which is also what
``lockyard locks`` and the reaper rely on. The price is that
``leaseTransitions`` restarts at 0 after a clean release; the ``lockyard.dev/fencing-token``
annotation is the lifetime counter.

Fencing tokens order everything: a Lease carrying a higher token than this process's acquisition
belongs to a newer holder and is never overwritten or deleted; one carrying a lower or equal token
for a lock this process no longer holds is stale and is deleted (conditionally, on its
``resourceVersion``, so a concurrent takeover is never undone). A Lease whose guard expired
without a release (its holder stopped renewing) is deleted when its lease runs out.

When the holder runs in a pod (``POD_NAME``, ``POD_NAMESPACE`` and ``POD_UID`` from the downward
API) in the Lease's namespace, the Lease has an ``ownerReference`` to the pod, so deleting the
pod garbage-collects it. A holder killed outright leaves its Lease until the operator's reaper
(``lockyard_operator.reaper``) finds the backend no longer holds the lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import math
import os
import random
import socket
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from lockyard._resource import AsyncResource
from lockyard.clock import Clock
from lockyard.connection import Connection
from lockyard.errors import ConfigError
from lockyard.locks import LockGuard
from lockyard.mirror.kubeapi import DEFAULT_TIMEOUT, KubeApiError, KubeClient, load_api_client
from lockyard.mirror.lease_names import (
    BACKEND_ANNOTATION,
    FENCING_ANNOTATION,
    HOLDER_POD_ANNOTATION,
    LEASE_MS_ANNOTATION,
    LOCK_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    STORE_ANNOTATION,
    STORE_LABEL,
    lease_name,
    owner_prefix,
    store_label,
)
from lockyard.mirror.leases import MirroredLease, format_micro_time

log = logging.getLogger("lockyard.mirror")

T = TypeVar("T")

DEFAULT_FLUSH_INTERVAL_S = 0.1
DEFAULT_MAX_WRITES_PER_SECOND = 50.0
DEFAULT_MAX_LOCKS = 10_000
#: A Lease that exists is rewritten (renewed, handed over, deleted) at most this often, or every
#: third of the lock's TTL if that is shorter.
DEFAULT_REWRITE_INTERVAL_S = 1.0
DEFAULT_CLOSE_TIMEOUT_S = 2.0
BACKOFF_INITIAL_S = 0.2
BACKOFF_CAP_S = 5.0
#: Probes after a name collision before giving a lock up (each probe is another 48-bit hash).
MAX_PROBES = 8
#: Read-modify-write races one lock may lose in one round before it waits for the next.
MAX_STEPS = 6
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

#: The mirror of each mirrored connection (so enabling twice does not mirror twice).
_MIRRORS: weakref.WeakKeyDictionary[Connection, LeaseMirror] = weakref.WeakKeyDictionary()


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


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds locks in this process: a pod (downward API) or, outside Kubernetes, a host."""

    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Holder:
        """From ``POD_NAME``/``POD_NAMESPACE``/``POD_UID``, else the hostname."""
        env = os.environ if environ is None else environ
        name = env.get("POD_NAME") or socket.gethostname() or "unknown"
        namespace = env.get("POD_NAMESPACE") or None
        if namespace is None and env.get("POD_NAME"):
            with contextlib.suppress(OSError), open(SERVICE_ACCOUNT_NAMESPACE) as handle:
                namespace = handle.read().strip() or None
        return cls(name=name, namespace=namespace, uid=env.get("POD_UID") or None)

    def identity(self, owner: str) -> str:
        """``holderIdentity``: the pod (or host) and the acquisition."""
        return f"{self.name}_{owner_prefix(owner)}"

    def pod(self) -> str:
        """``namespace/name`` of the pod, or ``''`` outside one."""
        if self.uid is None or self.namespace is None:
            return ""
        return f"{self.namespace}/{self.name}"

    def owner_reference(self, lease_namespace: str) -> dict[str, Any] | None:
        """An ownerReference to the pod, when it can own a Lease in ``lease_namespace``.

        Owners must share the dependent's namespace (the garbage collector deletes a dependent
        whose owner it cannot find there), so a pod elsewhere owns nothing.
        """
        if self.uid is None or self.namespace != lease_namespace:
            return None
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}


@dataclass(slots=True, eq=False)
class _Slot:
    """One lock's latest known state here, and what this mirror knows of its Lease."""

    lock: str
    guard: LockGuard | None = None
    #: Newest fencing token seen for this lock in this process.
    fencing: int = 0
    acquired_at: float = 0.0
    released: bool = False
    #: Acquisitions with a token <= floor were found superseded by a newer holder's Lease.
    floor: int = 0
    probe: int = 0
    #: resourceVersion of the Lease this mirror last wrote (None: it owns none it knows of).
    rv: str | None = None
    #: Fencing token that Lease carries, and its leaseTransitions.
    remote_fencing: int = 0
    transitions: int = 0
    #: A Lease may exist that this mirror has not seen (an unanswered or conflicting write).
    unsure: bool = False
    failures: int = 0
    #: Loop time of this mirror's last write of the lock's Lease.
    written_at: float = -math.inf


class _Superseded(Exception):
    pass


class LeaseMirror(AsyncResource):
    """A lock observer that mirrors a handle's held locks into Leases (see the module docs).

    Create it with :func:`enable_lease_mirroring`. ``metrics`` counts its work; ``flush()``
    waits until every queued state is written; ``close()`` flushes (bounded) and stops.
    """

    def __init__(
        self,
        kube: KubeClient,
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
        self.kube = kube
        self.store = store
        self.namespace = namespace
        self.backend = backend
        self.holder = holder or Holder.detect()
        self.flush_interval = flush_interval
        self.max_writes_per_second = max_writes_per_second
        self.max_locks = max_locks
        self._metrics = MirrorMetrics()
        self._clock = clock
        self._store_label = store_label(store)
        #: Lock events not yet seen by the worker: name -> (guard, held, acquired_at or None).
        #: The observer callbacks touch nothing else, so they stay a few dict operations.
        self._pending: dict[str, tuple[LockGuard, bool, float | None]] = {}
        self._pending_limit = max_locks
        self._coalesced = 0
        self._dropped = 0
        self._slots: dict[str, _Slot] = {}
        #: Locks the worker must sync although no new event came (failed, raced, expired).
        self._todo: dict[str, None] = {}
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
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lockyard-lease-mirror"
        )
        self._worker = asyncio.create_task(self._work(), name=f"lockyard-lease-mirror:{store}")

    def __repr__(self) -> str:
        return f"<LeaseMirror store={self.store!r} namespace={self.namespace!r}>"

    # -- LockObserver: synchronous, a few dict operations, never touches the network ---------
    # Kept flat on purpose: they run inside every acquire, extend and release.
    def lock_acquired(self, guard: LockGuard) -> None:
        pending = self._pending
        previous = pending.get(guard.name)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return  # late news of an older acquisition
            self._coalesced += 1
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        pending[guard.name] = (guard, True, guard.renewed_at)
        self._wake.set()

    def lock_extended(self, guard: LockGuard) -> None:
        pending = self._pending
        previous = pending.get(guard.name)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return
            self._coalesced += 1
            pending[guard.name] = (guard, True, previous[2] if previous[0] is guard else None)
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        else:
            pending[guard.name] = (guard, True, None)
        self._wake.set()

    def lock_released(self, guard: LockGuard) -> None:
        pending = self._pending
        previous = pending.get(guard.name)
        if previous is not None:
            if previous[0].fencing_token > guard.fencing_token:
                return
            self._coalesced += 1
        elif len(pending) >= self._pending_limit:
            self._dropped += 1
            return
        pending[guard.name] = (guard, False, None)
        self._wake.set()

    # -- public ----------------------------------------------------------------------------
    @property
    def metrics(self) -> MirrorMetrics:
        """The counters (the callbacks keep two of them apart, for speed)."""
        self._metrics.coalesced = self._coalesced
        self._metrics.dropped = self._dropped
        return self._metrics

    @property
    def pending(self) -> int:
        """Locks whose latest state is not written yet."""
        return len(self._pending) + len(self._todo)

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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.kube.close()

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
        names = self._take_events()
        for index, lock in enumerate(names):
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

    def _desired(self, slot: _Slot, now: float) -> LockGuard | None:
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
                if guard is None:
                    done = await self._sync_absent(slot)
                else:
                    done = await self._sync_held(slot, guard)
            except _Superseded:
                self._metrics.superseded += 1
                return
            if done:
                return
        self._todo[slot.lock] = None  # lost every race this round; try again next round

    async def _sync_held(self, slot: _Slot, guard: LockGuard) -> bool:
        name = lease_name(self.store, slot.lock, slot.probe)
        if slot.rv is not None:
            transitions = slot.transitions + (slot.remote_fencing != guard.fencing_token)
            body = self._lease(slot, guard, transitions, slot.rv)
            try:
                written = await self._call(self.kube.replace_lease, self.namespace, name, body)
            except KubeApiError as exc:
                if exc.status == 409:
                    slot.rv, slot.unsure = None, True
                    return False
                if exc.status == 404:
                    slot.rv, slot.unsure = None, False
                    return False
                raise
            self._wrote(slot, guard, written, transitions)
            return True
        if not slot.unsure:
            body = self._lease(slot, guard, 0, None)
            try:
                written = await self._call(self.kube.create_lease, self.namespace, body)
            except KubeApiError as exc:
                if exc.status == 409:
                    slot.unsure = True
                    return False
                if exc.status == 0:
                    slot.unsure = True  # the create may have happened
                raise
            self._wrote(slot, guard, written, 0)
            return True
        existing = await self._read(slot, name)
        if existing is not None:
            token = existing.fencing_token or 0
            if token > guard.fencing_token:
                slot.floor = max(slot.floor, token)
                raise _Superseded
            slot.rv, slot.remote_fencing = existing.resource_version, token
            slot.transitions = existing.transitions
        return False

    async def _sync_absent(self, slot: _Slot) -> bool:
        if slot.rv is None and not slot.unsure:
            return True
        name = lease_name(self.store, slot.lock, slot.probe)
        if slot.rv is not None:
            try:
                await self._call(self.kube.delete_lease, self.namespace, name, slot.rv)
            except KubeApiError as exc:
                if exc.status == 404:
                    slot.rv = None
                    return True
                if exc.status == 409:
                    slot.rv, slot.unsure = None, True
                    return False
                raise
            self._metrics.written += 1
            slot.rv = None
            slot.written_at = self._loop.time()
            return True
        existing = await self._read(slot, name)
        if existing is None:
            return True
        token = existing.fencing_token or 0
        if token > slot.fencing:
            slot.unsure = False
            raise _Superseded
        # An acquisition no later than this process's last one, which is over: stale.
        slot.rv, slot.unsure = existing.resource_version, False
        return False

    async def _read(self, slot: _Slot, name: str) -> MirroredLease | None:
        """GET the Lease at ``name``; a collision moves the slot to its next name."""
        try:
            obj = await self._call(self.kube.get_lease, self.namespace, name)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            slot.unsure = False
            return None
        existing = MirroredLease.from_object(obj)
        if not existing.is_mirror_of(self.store, slot.lock):
            self._metrics.collisions += 1
            slot.probe += 1
            slot.unsure = False
            if slot.probe > MAX_PROBES:
                raise KubeApiError(409, f"no free Lease name for lock {slot.lock!r}")
            return None
        slot.unsure = False
        return existing

    def _wrote(
        self, slot: _Slot, guard: LockGuard, written: Mapping[str, Any], transitions: int
    ) -> None:
        self._metrics.written += 1
        slot.written_at = self._loop.time()
        slot.rv = (written.get("metadata") or {}).get("resourceVersion")
        slot.remote_fencing = guard.fencing_token
        slot.transitions = transitions
        slot.unsure = False
        deadline = guard.renewed_at + guard.lease_ms / 1000
        heapq.heappush(self._expiries, (deadline, slot.lock, guard.fencing_token))

    def _lease(
        self, slot: _Slot, guard: LockGuard, transitions: int, resource_version: str | None
    ) -> dict[str, Any]:
        annotations = {
            LOCK_ANNOTATION: slot.lock,
            STORE_ANNOTATION: self.store,
            FENCING_ANNOTATION: str(guard.fencing_token),
            BACKEND_ANNOTATION: self.backend,
            OWNER_ANNOTATION: owner_prefix(guard.owner),
            LEASE_MS_ANNOTATION: str(guard.lease_ms),
        }
        pod = self.holder.pod()
        if pod:
            annotations[HOLDER_POD_ANNOTATION] = pod
        metadata: dict[str, Any] = {
            "name": lease_name(self.store, slot.lock, slot.probe),
            "namespace": self.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, STORE_LABEL: self._store_label},
            "annotations": annotations,
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        owner = self.holder.owner_reference(self.namespace)
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder.identity(guard.owner),
                "leaseDurationSeconds": max(1, math.ceil(guard.lease_ms / 1000)),
                "acquireTime": format_micro_time(slot.acquired_at),
                "renewTime": format_micro_time(guard.renewed_at),
                "leaseTransitions": transitions,
            },
        }

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """One API call in the mirror's thread, after the rate limiter allows it."""
        await self._take_token()
        return await self._loop.run_in_executor(self._executor, function, *args)

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


def enable_lease_mirroring(
    connection: Connection,
    store_name: str,
    namespace: str,
    api_client: Any = None,
    *,
    holder: Holder | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
    max_writes_per_second: float = DEFAULT_MAX_WRITES_PER_SECOND,
    max_locks: int = DEFAULT_MAX_LOCKS,
    request_timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    rewrite_interval: float = DEFAULT_REWRITE_INTERVAL_S,
) -> LeaseMirror:
    """Mirror the locks ``connection`` holds into Leases in ``namespace``, as store ``store_name``.

    Call it from a coroutine (it starts the worker task). ``api_client`` is a
    ``kubernetes.client.ApiClient``; by default one is made from the in-cluster service account
    or the kubeconfig, and closed with the mirror. Each API call gives up after
    ``request_timeout`` (connect, read) seconds. The mirror stops when the connection closes
    (or on ``await mirror.close()``). Idempotent: a connection already mirrored returns its
    mirror. Raises ``ConfigError`` without usable credentials.
    """
    existing = _MIRRORS.get(connection)
    if existing is not None and not existing.closed:
        return existing
    owns = api_client is None
    kube = KubeClient(load_api_client() if owns else api_client, timeout=request_timeout, owns=owns)
    mirror = LeaseMirror(
        kube,
        store=store_name,
        namespace=namespace,
        backend=connection.backend,
        clock=connection.locks.clock,
        holder=holder,
        flush_interval=flush_interval,
        max_writes_per_second=max_writes_per_second,
        max_locks=max_locks,
        rewrite_interval=rewrite_interval,
    )
    connection.locks.add_observer(mirror)
    connection.on_close(mirror.close)
    _MIRRORS[connection] = mirror
    return mirror


def mirror_of(connection: Connection) -> LeaseMirror | None:
    """The open mirror attached to ``connection``, if any."""
    mirror = _MIRRORS.get(connection)
    return None if mirror is None or mirror.closed else mirror


def maybe_mirror(
    connection: Connection,
    binding: Any,
    *,
    store_name: str,
    namespace: str,
    api_client: Any = None,
) -> LeaseMirror | None:
    """Turn mirroring on when the store's binding says so (``lease-mirroring: "true"``).

    ``binding`` is a ``lockyard.kube.StoreBinding`` or the binding Secret's decoded data. Missing
    credentials only log a warning and return ``None``: mirroring must never stop a workload.
    """
    if isinstance(binding, Mapping):
        enabled = str(binding.get("lease-mirroring", "false")).strip().lower() == "true"
    else:
        enabled = bool(getattr(binding, "lease_mirroring", False))
    if not enabled:
        return None
    try:
        return enable_lease_mirroring(connection, store_name, namespace, api_client)
    except ConfigError as exc:
        log.warning("lease mirroring for store %s/%s is off: %s", namespace, store_name, exc)
        return None
