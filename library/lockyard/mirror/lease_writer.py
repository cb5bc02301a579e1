"""The Lease write protocol: create, update and delete the Lease that mirrors one lock (or one
semaphore permit or read-write lock holder: a :data:`MirroredGuard`).

No pacing, no queue, no thread of its own: every method is one API request (or a few, in
:meth:`LeaseWriter.write_held`/:meth:`~LeaseWriter.write_absent`, each step one request), and
the caller decides when to call. The mirror (:mod:`lockyard.mirror.lease_mirror`) drives it
from its worker; the operator's reaper and ``lockyard locks break`` use its conditional
:meth:`~LeaseWriter.replace` and :meth:`~LeaseWriter.delete`.

Fencing tokens order writers: a Lease carrying a higher token than the writer's acquisition
belongs to a newer holder and is never overwritten or deleted (:class:`Superseded`). Replaces
and deletes are conditional on the ``resourceVersion`` last read, so a concurrent takeover is
never undone. A Lease found under the lock's name but naming another lock (a hash collision) is
left alone and the lock moves to its next probe name (see :mod:`lockyard.mirror.lease_names`).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lockyard.elections import identity_of
from lockyard.identity import ELECTION_LOCK_PREFIX
from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard.kube.leader_record import ELECTION_KIND, KIND_LABEL
from lockyard.kube.paths import LEASE_API_VERSION, leases_path
from lockyard.locks import LockGuard
from lockyard.mirror.holder import Holder
from lockyard.mirror.lease_names import (
    BACKEND_ANNOTATION,
    FENCING_ANNOTATION,
    HOLDER_POD_ANNOTATION,
    LEASE_MS_ANNOTATION,
    LIMIT_ANNOTATION,
    LOCK_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    STORE_ANNOTATION,
    STORE_LABEL,
    lease_name,
    owner_prefix,
    store_label,
    store_selector,
)
from lockyard.mirror.leases import MirroredLease, format_micro_time
from lockyard.permits import PermitGuard

#: What a Lease can stand for: a lock's (or election's) acquisition, or one permit.
MirroredGuard = LockGuard | PermitGuard

#: Probes after a name collision before giving a lock up (each probe is another 48-bit hash).
MAX_PROBES = 8


class Step(enum.Enum):
    """What one step of :meth:`LeaseWriter.write_held`/``write_absent`` did."""

    #: The Lease now says what it should (a create, replace or delete succeeded).
    WRITTEN = "written"
    #: Nothing to write: the Lease already says what it should.
    DONE = "done"
    #: The writer learnt something (a conflict, a Lease it did not know of): step again.
    AGAIN = "again"


class Superseded(Exception):
    """A newer acquisition (``fencing_token``) owns the Lease: it is not this writer's."""

    def __init__(self, fencing_token: int) -> None:
        super().__init__(f"the Lease belongs to fencing token {fencing_token}")
        self.fencing_token = fencing_token


@dataclass(slots=True, eq=False)
class LeaseState:
    """What a writer knows of one lock's Lease."""

    #: The lock's name, or a permit's :func:`~lockyard.mirror.lease_names.permit_key`.
    lock: str
    #: Collision probe of the Lease name (0: the lock's own name).
    probe: int = 0
    #: resourceVersion of the Lease this writer last wrote (None: it owns none it knows of).
    rv: str | None = None
    #: Fencing token and leaseTransitions that Lease carries.
    remote_fencing: int = 0
    transitions: int = 0
    #: A Lease may exist that this writer has not seen (an unanswered or conflicting write).
    unsure: bool = False


class LeaseWriter:
    """Writes the Leases of store ``store`` in ``namespace`` (see the module docstring).

    ``pace``, when given, is awaited before every API call (the mirror's rate limit).
    """

    def __init__(
        self,
        api: KubeApi,
        store: str,
        namespace: str,
        *,
        backend: str = "",
        holder: Holder | None = None,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.namespace = namespace
        self.backend = backend
        self._holder = holder
        self._pace = pace
        self._store_label = store_label(store)
        #: Lease names found taken by another lock (hash collisions).
        self.collisions = 0

    @property
    def holder(self) -> Holder:
        """Who the Leases this writer writes name as holder (detected on first use)."""
        if self._holder is None:
            self._holder = Holder.detect()
        return self._holder

    # -- one request each --------------------------------------------------------------------
    async def list(self) -> list[dict[str, Any]]:
        """The store's mirrored Lease objects (by label, then by their store annotation)."""
        await self._pace_call()
        selector = {"labelSelector": store_selector(self.store)}
        listed = await self.api.get(leases_path(self.namespace), selector)
        items = listed.get("items") or []
        return [obj for obj in items if MirroredLease.from_object(obj).store == self.store]

    async def read(self, name: str) -> dict[str, Any] | None:
        await self._pace_call()
        return await self.api.get_or_none(leases_path(self.namespace, name))

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self._pace_call()
        return await self.api.create(leases_path(self.namespace), body)

    async def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT, conditional on ``body``'s ``metadata.resourceVersion`` (409 if it changed)."""
        await self._pace_call()
        return await self.api.replace(leases_path(self.namespace, name), body)

    async def delete(self, name: str, resource_version: str | None) -> bool:
        """DELETE, only if the Lease is still at ``resource_version`` (409 otherwise);
        ``False`` if it was already gone."""
        path = leases_path(self.namespace, name)
        await self._pace_call()
        return await self.api.delete(path, resource_version=resource_version)

    # -- the protocol for one lock -----------------------------------------------------------
    async def write_held(self, lease: LeaseState, guard: MirroredGuard, acquired_at: float) -> Step:
        """One step towards a Lease saying ``guard`` holds the lock (since ``acquired_at``)."""
        if lease.rv is not None:
            transitions = lease.transitions + (lease.remote_fencing != guard.fencing_token)
            body = self.body(lease, guard, acquired_at, transitions, lease.rv)
            try:
                written = await self.replace(body["metadata"]["name"], body)
            except KubeApiError as exc:
                if exc.conflict or exc.not_found:
                    # Changed (409: re-read it) or gone (404: create it again).
                    lease.rv, lease.unsure = None, exc.conflict
                    return Step.AGAIN
                raise
            self._wrote(lease, guard, written, transitions)
            return Step.WRITTEN
        if not lease.unsure:
            body = self.body(lease, guard, acquired_at, 0, None)
            try:
                written = await self.create(body)
            except KubeApiError as exc:
                if exc.conflict:
                    lease.unsure = True
                    return Step.AGAIN
                if exc.unreachable:
                    lease.unsure = True  # the create may have happened
                raise
            self._wrote(lease, guard, written, 0)
            return Step.WRITTEN
        existing = await self._read(lease)
        if existing is not None:
            token = existing.fencing_token or 0
            if token > guard.fencing_token:
                raise Superseded(token)
            lease.rv, lease.remote_fencing = existing.resource_version, token
            lease.transitions = existing.transitions
        return Step.AGAIN

    async def write_absent(self, lease: LeaseState, fencing: int) -> Step:
        """One step towards no Lease for an acquisition no later than ``fencing``, now over."""
        if lease.rv is None and not lease.unsure:
            return Step.DONE
        if lease.rv is not None:
            name = lease_name(self.store, lease.lock, lease.probe)
            try:
                deleted = await self.delete(name, lease.rv)
            except KubeApiError as exc:
                if exc.conflict:
                    lease.rv, lease.unsure = None, True
                    return Step.AGAIN
                raise
            lease.rv = None
            return Step.WRITTEN if deleted else Step.DONE
        existing = await self._read(lease)
        if existing is None:
            return Step.DONE
        token = existing.fencing_token or 0
        if token > fencing:
            raise Superseded(token)
        # An acquisition no later than this writer's last one, which is over: stale.
        lease.rv = existing.resource_version
        return Step.AGAIN

    async def write_released(self, lease: LeaseState, fencing: int) -> Step:
        """One step towards an election's Lease naming no leader, for a term no later than
        ``fencing``, now over: client-go's release. The Lease and its ``leaseTransitions`` stay
        for the next term (whose holder takes it over with one more transition)."""
        if lease.rv is None and not lease.unsure:
            return Step.DONE
        if lease.rv is not None:
            name = lease_name(self.store, lease.lock, lease.probe)
            body = self.released_body(name, lease.lock, fencing, lease.transitions, lease.rv)
            try:
                await self.replace(name, body)
            except KubeApiError as exc:
                if exc.conflict:
                    lease.rv, lease.unsure = None, True
                    return Step.AGAIN
                if exc.not_found:
                    lease.rv = None
                    return Step.DONE
                raise
            lease.rv = None  # the next term reads it again
            return Step.WRITTEN
        existing = await self._read(lease)
        if existing is None or not existing.holder:
            return Step.DONE
        token = existing.fencing_token or 0
        if token > fencing:
            raise Superseded(token)
        lease.rv, lease.transitions = existing.resource_version, existing.transitions
        return Step.AGAIN

    async def retire(self, lease: MirroredLease) -> bool:
        """Remove an acquisition that is over from its Lease, conditional on the version read:
        delete a lock's Lease; release an election's (it stays, naming no leader). ``False``
        if the Lease was already gone (or already named no leader)."""
        if lease.kind != "election":
            return await self.delete(lease.name, lease.resource_version)
        if not lease.holder:
            return False
        fencing = lease.fencing_token or 0
        body = self.released_body(
            lease.name, lease.lock, fencing, lease.transitions, lease.resource_version
        )
        try:
            await self.replace(lease.name, body)
        except KubeApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def released_body(
        self, name: str, lock: str, fencing: int, transitions: int, resource_version: str | None
    ) -> dict[str, Any]:
        """An election's Lease naming no leader, as client-go's release writes it (no holder,
        a 1 s duration, both times now, ``leaseTransitions`` kept); the annotations keep the
        last term's fencing token, so only a later term takes the Lease over."""
        now = format_micro_time(time.time())
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                STORE_LABEL: self._store_label,
                KIND_LABEL: ELECTION_KIND,
            },
            "annotations": {
                LOCK_ANNOTATION: lock,
                STORE_ANNOTATION: self.store,
                FENCING_ANNOTATION: str(fencing),
                BACKEND_ANNOTATION: self.backend,
                LEASE_MS_ANNOTATION: "1000",
            },
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    def body(
        self,
        lease: LeaseState,
        guard: MirroredGuard,
        acquired_at: float,
        transitions: int,
        resource_version: str | None,
    ) -> dict[str, Any]:
        """The Lease object saying ``guard`` holds ``lease.lock`` (see docs/leases.md)."""
        annotations = {
            LOCK_ANNOTATION: guard.name if isinstance(guard, PermitGuard) else lease.lock,
            STORE_ANNOTATION: self.store,
            FENCING_ANNOTATION: str(guard.fencing_token),
            BACKEND_ANNOTATION: self.backend,
            OWNER_ANNOTATION: owner_prefix(guard.owner),
            LEASE_MS_ANNOTATION: str(guard.lease_ms),
        }
        pod = self.holder.pod()
        if pod:
            annotations[HOLDER_POD_ANNOTATION] = pod
        labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, STORE_LABEL: self._store_label}
        holder_identity = self.holder.identity(guard.owner)
        if isinstance(guard, PermitGuard):
            # One Lease per permit; the label says what it is (lockyard locks' KIND column).
            labels[KIND_LABEL] = guard.kind
            limit = getattr(guard, "limit", None)
            if limit is not None:
                annotations[LIMIT_ANNOTATION] = str(limit)
        elif lease.lock.startswith(ELECTION_LOCK_PREFIX):
            # An election reads like client-go's: the leader's identity, and the kind label.
            labels[KIND_LABEL] = ELECTION_KIND
            holder_identity = identity_of(guard.owner)
        metadata: dict[str, Any] = {
            "name": lease_name(self.store, lease.lock, lease.probe),
            "namespace": self.namespace,
            "labels": labels,
            "annotations": annotations,
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        # No owner for an election's Lease: it outlives each term (client-go's does too), so the
        # pod's garbage collection must not take its history with it. A permit's dies with it.
        election = labels.get(KIND_LABEL) == ELECTION_KIND
        owner = None if election else self.holder.owner_reference(self.namespace)
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder_identity,
                "leaseDurationSeconds": max(1, math.ceil(guard.lease_ms / 1000)),
                "acquireTime": format_micro_time(acquired_at),
                "renewTime": format_micro_time(guard.renewed_at),
                "leaseTransitions": transitions,
            },
        }

    # -- helpers -------------------------------------------------------------------------------
    async def _read(self, lease: LeaseState) -> MirroredLease | None:
        """The Lease at the lock's current name; a collision moves it to its next name."""
        obj = await self.read(lease_name(self.store, lease.lock, lease.probe))
        lease.unsure = False
        if obj is None:
            return None
        existing = MirroredLease.from_object(obj)
        if not existing.is_mirror_of(self.store, lease.lock):
            self.collisions += 1
            lease.probe += 1
            if lease.probe > MAX_PROBES:
                raise KubeApiError(409, "Conflict", f"no free Lease name for lock {lease.lock!r}")
            return None
        return existing

    @staticmethod
    def _wrote(
        lease: LeaseState, guard: MirroredGuard, written: Mapping[str, Any], transitions: int
    ) -> None:
        lease.rv = (written.get("metadata") or {}).get("resourceVersion")
        lease.remote_fencing = guard.fencing_token
        lease.transitions = transitions
        lease.unsure = False

    async def _pace_call(self) -> None:
        if self._pace is not None:
            await self._pace()
