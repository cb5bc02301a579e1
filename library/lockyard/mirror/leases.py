"""Reading mirrored Leases back: one :class:`MirroredLease` per Lease object (CLI and reaper).

A Lease is matched to its lock by its annotations (exact store and lock names, fencing token),
never by parsing its name (see :mod:`lockyard.mirror.lease_names`); a permit's Lease by those
and its ``lockyard.dev/kind`` label (:attr:`MirroredLease.key`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockyard.identity import ELECTION_LOCK_PREFIX
from lockyard.mirror.lease_names import (
    BACKEND_ANNOTATION,
    FENCING_ANNOTATION,
    HOLDER_POD_ANNOTATION,
    KIND_LABEL,
    LEASE_MS_ANNOTATION,
    LIMIT_ANNOTATION,
    LOCK_ANNOTATION,
    LOCK_KIND,
    OWNER_ANNOTATION,
    PERMIT_KINDS,
    STORE_ANNOTATION,
    permit_key,
)


def format_micro_time(epoch_seconds: float) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    moment = dt.datetime.fromtimestamp(epoch_seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (``Time`` or ``MicroTime``), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class MirroredLease:
    """One mirrored lock as its Lease shows it."""

    namespace: str
    name: str
    store: str
    lock: str
    holder: str
    fencing_token: int | None
    backend: str
    owner: str
    holder_pod: str
    acquire_time: float | None
    renew_time: float | None
    duration_s: int | None
    lease_ms: int | None
    transitions: int
    resource_version: str | None
    created: float | None
    #: The ``lockyard.dev/kind`` label (``""`` on a lock's Lease, which has none).
    kind_label: str = ""
    #: A semaphore permit's Lease: the semaphore's limit.
    limit: int | None = None

    @classmethod
    def from_object(cls, lease: Mapping[str, Any]) -> MirroredLease:
        metadata = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        annotations = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        name = str(metadata.get("name", ""))
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=name,
            store=str(annotations.get(STORE_ANNOTATION) or labels.get(STORE_ANNOTATION) or ""),
            lock=str(annotations.get(LOCK_ANNOTATION) or name),
            holder=str(spec.get("holderIdentity") or ""),
            fencing_token=_int(annotations.get(FENCING_ANNOTATION)),
            backend=str(annotations.get(BACKEND_ANNOTATION) or ""),
            owner=str(annotations.get(OWNER_ANNOTATION) or ""),
            holder_pod=str(annotations.get(HOLDER_POD_ANNOTATION) or ""),
            acquire_time=parse_time(spec.get("acquireTime")),
            renew_time=parse_time(spec.get("renewTime")),
            duration_s=_int(spec.get("leaseDurationSeconds")),
            lease_ms=_int(annotations.get(LEASE_MS_ANNOTATION)),
            transitions=_int(spec.get("leaseTransitions")) or 0,
            resource_version=metadata.get("resourceVersion"),
            created=parse_time(metadata.get("creationTimestamp")),
            kind_label=str(labels.get(KIND_LABEL) or ""),
            limit=_int(annotations.get(LIMIT_ANNOTATION)),
        )

    @property
    def released(self) -> bool:
        """An election's Lease between terms: it names no leader (client-go's release)."""
        return self.kind == "election" and not self.holder

    @property
    def kind(self) -> str:
        """``semaphore``, ``rwlock-read`` or ``rwlock-write`` for a permit (its label);
        ``election`` for an election's lock (``lockyard.elections``); else ``lock``."""
        if self.kind_label in PERMIT_KINDS:
            return self.kind_label
        return "election" if self.lock.startswith(ELECTION_LOCK_PREFIX) else LOCK_KIND

    @property
    def permit_space(self) -> str | None:
        """The permit table a permit's Lease belongs to (``semaphore``, ``rwlock``), or
        ``None`` for a lock's or an election's."""
        return PERMIT_KINDS.get(self.kind_label)

    @property
    def key(self) -> str:
        """What this Lease stands for: the lock name, or a permit's
        :func:`~lockyard.mirror.lease_names.permit_key`."""
        space = self.permit_space
        if space is None:
            return self.lock
        return permit_key(space, self.lock, self.fencing_token or 0)

    def is_mirror_of(self, store: str, key: str) -> bool:
        """Whether this Lease stands for ``key`` (a lock name or a permit key) of store
        ``store`` (its annotations and kind label agree)."""
        return self.store == store and self.key == key

    @property
    def expires_at(self) -> float | None:
        """When the lease runs out if not renewed (epoch seconds), or ``None`` if unknown."""
        if self.renew_time is None:
            return None
        if self.lease_ms is not None:
            return self.renew_time + self.lease_ms / 1000
        if self.duration_s is not None:
            return self.renew_time + self.duration_s
        return None

    def expires_in(self, now: float) -> float | None:
        expires_at = self.expires_at
        return None if expires_at is None else expires_at - now

    def expired(self, now: float) -> bool:
        remaining = self.expires_in(now)
        return remaining is not None and remaining <= 0

    def to_dict(self, now: float) -> dict[str, Any]:
        """A JSON-ready view (times as RFC 3339, ``expiresInSeconds`` relative to ``now``)."""
        remaining = self.expires_in(now)
        return {
            "namespace": self.namespace,
            "store": self.store,
            "kind": self.kind,
            "lock": self.lock,
            "holder": self.holder,
            "fencingToken": self.fencing_token,
            "acquireTime": _rfc3339(self.acquire_time),
            "renewTime": _rfc3339(self.renew_time),
            "expiresInSeconds": None if remaining is None else round(remaining, 3),
            "leaseDurationSeconds": self.duration_s,
            "leaseTransitions": self.transitions,
            "backend": self.backend,
            "owner": self.owner,
            "holderPod": self.holder_pod or None,
            "lease": self.name,
        }


def _rfc3339(epoch: float | None) -> str | None:
    return None if epoch is None or math.isnan(epoch) else format_micro_time(epoch)
