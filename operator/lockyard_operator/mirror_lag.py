"""How far a mirrored Lease trails the backend: the operator's ``lease_mirror_lag_seconds``.

A holder's mirror writes the Lease of a lock with ``renewTime`` = the start of the renewal it
mirrors and the lock's TTL (``lockyard.dev/lease-ms``), so the Lease's expiry is the backend's
expiry as of that renewal. The backend answers ``list_held`` with each lock's remaining TTL, so
its expiry now is known too. Their difference is how much newer the backend's latest renewal is
than the one the Lease shows: 0 for a Lease that is up to date, one renewal period for a mirror
one renewal behind, growing for a mirror cut off from the API. Definition, bounds and the clock
caveat: docs/operator.md ("Metrics").
"""

from __future__ import annotations

from lockyard.locks import LockInfo
from lockyard.mirror.leases import MirroredLease


def mirror_lag(lease: MirroredLease, held: LockInfo, answered_at: float) -> float | None:
    """Seconds by which ``lease`` trails ``held``, the same acquisition as the backend listed
    it at wall time ``answered_at``; never negative. ``None`` if the Lease shows no expiry
    (no ``renewTime``, or neither TTL field)."""
    lease_expires_at = lease.expires_at
    if lease_expires_at is None:
        return None
    backend_expires_at = answered_at + held.expires_in_ms / 1000
    # Negative only from clock skew between holder and operator or millisecond rounding: a
    # Lease cannot show a renewal the backend has not granted.
    return max(0.0, backend_expires_at - lease_expires_at)
