"""Reaping: remove mirrored Leases whose lock the backend no longer holds.

A holder that dies (SIGKILL, OOM, node loss) cannot delete its own Lease, nor can one whose lock
someone broke. :func:`reap_leases` compares one store's Leases with the backend's truth
(``list_held`` of its locks, and of its semaphores and read-write locks when given: each permit
or holder has a Lease of its own): it deletes every Lease whose acquisition is over, corrects the
Lease of a live acquisition that looks expired, and counts held locks with no Lease. The Leases
are listed *before* the backend is asked, which is what makes each delete safe; why, and the
timing it gives, are in docs/leases.md ("Reaping"). No kopf here: the operator wires
:func:`reap_leases` into a timer; tests call it directly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard.locks import DistributedLock, LockInfo
from lockyard.mirror.held import held_acquisitions
from lockyard.mirror.lease_names import LEASE_MS_ANNOTATION
from lockyard.mirror.lease_writer import LeaseWriter
from lockyard.mirror.leases import MirroredLease, format_micro_time
from lockyard.permits import PermitTable
from lockyard_operator.mirror_lag import mirror_lag

#: Seconds between reaper passes the operator's timer should use (see the module docstring).
REAP_INTERVAL_S = 5.0
#: A live lock's Lease is corrected only once it has looked expired for this long (its holder's
#: mirror normally renews it first).
CORRECT_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class ReapResult:
    """What one pass saw and did."""

    #: Locks the backend holds (for ``status.locks.held``).
    held: int
    #: Mirrored Leases of the store found.
    leases: int
    #: Stale Leases deleted (an election's: released, naming no leader).
    deleted: int
    #: Leases of live locks brought in line with the backend.
    corrected: int
    #: Held locks with no Lease (mirroring off, or the holder's mirror cut off from the API).
    unmirrored: int
    #: Leases that changed while the pass ran, left for the next pass.
    conflicts: int
    #: Seconds the most outdated Lease of a held lock trails the backend, before any correction
    #: (0 if none; :mod:`~lockyard_operator.mirror_lag`).
    lag: float = 0.0


async def reap_leases(
    api: KubeApi,
    namespace: str,
    store_name: str,
    locks: DistributedLock,
    *,
    permits: Sequence[PermitTable] = (),
    now: Callable[[], float] = time.time,
) -> ReapResult:
    """One reaping pass over the Leases of StateStore ``namespace/store_name``.

    ``locks`` is the store's open ``DistributedLock``; ``permits`` its semaphore and read-write
    lock tables (``lockyard.mirror.registry.permit_tables(connection)``). A permit's Lease of a
    table not given is left alone: this pass cannot tell whether it is held. The Leases are
    read and written through the mirror's :class:`~lockyard.mirror.lease_writer.LeaseWriter`
    (conditional on the ``resourceVersion`` listed). API failures raise
    ``lockyard.kube.errors.KubeApiError`` and backend failures ``lockyard.StateError``: the
    timer retries on its next tick.
    """
    leases = LeaseWriter(api, store_name, namespace)
    objects = await leases.list()
    # Keyed as Leases are: a lock by name, a permit by its permit key (lease_names).
    acquisitions = await held_acquisitions(locks, permits)
    held = {key: entry.info for key, entry in acquisitions.items()}
    spaces = {table.space for table in permits}
    answered_at = now()

    deleted = corrected = conflicts = 0
    lag = 0.0
    mirrored: set[str] = set()
    for obj in objects:
        lease = MirroredLease.from_object(obj)
        if lease.released:
            continue  # an election between terms: its Lease stays (client-go's record)
        if lease.permit_space is not None and lease.permit_space not in spaces:
            continue  # a permit of a table this pass was not given
        info = held.get(lease.key)
        try:
            if info is None or lease.fencing_token != info.fencing_token:
                # Deleted; an election's is released instead (it keeps leaseTransitions).
                deleted += await leases.retire(lease)
                continue
            mirrored.add(lease.key)
            lag = max(lag, mirror_lag(lease, info, answered_at) or 0.0)
            expires_in = lease.expires_in(now())
            if expires_in is None or expires_in < -CORRECT_AFTER_S:
                await leases.replace(lease.name, _corrected(obj, info, now()))
                corrected += 1
        except KubeApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise
            # 404: already gone. 409: changed since listed; the next pass sees the new state.
            conflicts += exc.conflict
    return ReapResult(
        held=len(held),
        leases=len(objects),
        deleted=deleted,
        corrected=corrected,
        unmirrored=len(set(held) - mirrored),
        conflicts=conflicts,
        lag=lag,
    )


def _corrected(obj: dict[str, Any], info: LockInfo, now: float) -> dict[str, Any]:
    """``obj`` renewed now, for the lease the backend still grants (conditional on its version)."""
    metadata = dict(obj.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[LEASE_MS_ANNOTATION] = str(max(1, info.expires_in_ms))
    metadata["annotations"] = annotations
    spec = dict(obj.get("spec") or {})
    spec["renewTime"] = format_micro_time(now)
    spec["leaseDurationSeconds"] = max(1, math.ceil(info.expires_in_ms / 1000))
    return {**obj, "metadata": metadata, "spec": spec}
