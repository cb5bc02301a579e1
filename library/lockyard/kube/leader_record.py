"""client-go's leader-election record, kept in a ``coordination.k8s.io/v1`` Lease.

The spec fields are exactly those client-go's ``LeaseLock`` writes (``holderIdentity``,
``leaseDurationSeconds``, ``acquireTime``, ``renewTime``, ``leaseTransitions``), so
``kubectl get lease`` reads the same for Lockyard's elections as for kube-controller-manager's.
A term change (a new holder) increments ``leaseTransitions``; a release empties
``holderIdentity`` and keeps the count, as client-go does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockyard.kube.paths import LEASE_API_VERSION

#: The label every election Lease carries (lock mirrors carry ``lock``), so listings can tell
#: them apart.
KIND_LABEL = "lockyard.dev/kind"
ELECTION_KIND = "election"


def micro_time(epoch_seconds: float) -> str:
    """A Kubernetes ``MicroTime`` (RFC 3339, UTC, microseconds), as client-go writes it."""
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: object) -> float | None:
    """Seconds since the epoch of a ``MicroTime`` (or ``Time``); ``None`` if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    """One state of an election Lease's spec. Times are wall-clock seconds (for people: no
    candidate trusts another's clock; expiry is judged on the observer's own clock)."""

    holder: str
    lease_duration_s: int
    acquire_time: float | None
    renew_time: float | None
    transitions: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LeaderRecord:
        spec = spec or {}
        holder = spec.get("holderIdentity")
        return cls(
            holder=holder if isinstance(holder, str) else "",
            lease_duration_s=_count(spec.get("leaseDurationSeconds")),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            transitions=_count(spec.get("leaseTransitions")),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_s,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = micro_time(self.renew_time)
        return spec


def lease_body(
    namespace: str,
    name: str,
    record: LeaderRecord,
    *,
    labels: Mapping[str, str] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Lease to create (``previous`` ``None``) or to replace ``previous`` with.

    A replacement carries ``previous``'s ``resourceVersion``, so the write is conditional: it
    fails with 409 if anyone wrote the Lease since it was read. Labels and annotations others
    put on the Lease are kept; ``managedFields`` are left for the server to keep.
    """
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        kept = previous.get("metadata") or {}
        metadata |= {k: v for k, v in kept.items() if k != "managedFields"}
    metadata["labels"] = {**(metadata.get("labels") or {}), **(labels or {})}
    return {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": metadata,
        "spec": record.to_spec(),
    }
