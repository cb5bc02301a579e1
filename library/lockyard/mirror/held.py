"""What a store's backend holds, keyed the way Leases are: the truth ``lockyard locks --verify``,
``lockyard locks break`` and the operator's reaper compare the mirrored Leases with.

Locks are keyed by name; each semaphore permit and read-write lock holder by its
:func:`~lockyard.mirror.lease_names.permit_key` (one Lease each). One ``list_held`` per table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lockyard.identity import ELECTION_LOCK_PREFIX
from lockyard.locks import DistributedLock, LockInfo
from lockyard.mirror.lease_names import (
    LOCK_KIND,
    PERMIT_KINDS,
    RWLOCK_READ_KIND,
    RWLOCK_WRITE_KIND,
    SEMAPHORE_KIND,
    permit_key,
)
from lockyard.permits import RW_CAPACITY, HolderInfo, PermitTable


@dataclass(frozen=True, slots=True)
class Held:
    """One live acquisition: a lock (or an election's lock), a permit or a read-write holder.

    ``info`` carries its name, full owner token, fencing token and remaining lease whatever
    its kind (a permit's as a ``LockInfo`` too, so Lease checks need one shape).
    """

    kind: str
    info: LockInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def space(self) -> str | None:
        """The permit table (``semaphore``, ``rwlock``), or ``None`` for a lock."""
        return PERMIT_KINDS.get(self.kind)

    @property
    def key(self) -> str:
        space = self.space
        if space is None:
            return self.info.name
        return permit_key(space, self.info.name, self.info.fencing_token)


def permit_kind(space: str, holder: HolderInfo) -> str:
    """A live holder's kind: ``semaphore``, or the read-write lock mode its weight says."""
    if space != "rwlock":
        return SEMAPHORE_KIND
    return RWLOCK_WRITE_KIND if holder.weight >= RW_CAPACITY else RWLOCK_READ_KIND


def lock_kind(name: str) -> str:
    return "election" if name.startswith(ELECTION_LOCK_PREFIX) else LOCK_KIND


async def held_acquisitions(
    locks: DistributedLock | None, tables: Iterable[PermitTable] = ()
) -> dict[str, Held]:
    """Every live acquisition of ``locks`` and of the permit ``tables``, by Lease key."""
    held: dict[str, Held] = {}
    if locks is not None:
        for info in await locks.list_held():
            held[info.name] = Held(lock_kind(info.name), info)
    for table in tables:
        for holder in await table.list_held():
            info = LockInfo(holder.name, holder.owner, holder.fencing_token, holder.expires_in_ms)
            entry = Held(permit_kind(table.space, holder), info)
            held[entry.key] = entry
    return held
