"""Lockyard: shared state and distributed locks for Kubernetes workloads.

>>> async with lockyard.connect("redis://redis:6379/0?prefix=orders") as ly:
...     if await ly.store.check_and_set("orders:acme:dedup:msg-1", "seen", ttl=3600):
...         async with ly.locks.hold("invoice-42", ttl=10) as guard:
...             ...  # guard.fencing_token goes to the protected resource
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard._lazy import lazy_exports
from lockyard._version import __version__ as __version__

# Errors are imported eagerly (they are light, and `except lockyard.StateError` must always
# work); everything else on first use (PEP 562), so a process that only needs part of the
# package, like the `lockyard locks` CLI listing Leases, does not pay for pydantic models,
# drivers' registries and entry points (about 0.3 s of start-up).
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    FenceLostError,
    FenceSlotError,
    HandleClosedError,
    InvalidKeyError,
    LockExpiredError,
    LockLostError,
    LockTimeoutError,
    LockUpgradeError,
    OperationTimeoutError,
    SemaphoreLimitError,
    SerializationError,
    StaleFenceError,
    StateError,
    UnexpectedReplyError,
)

if TYPE_CHECKING:
    from lockyard.connection import Connection, connect
    from lockyard.durations import Duration
    from lockyard.elections import Campaign, Elections, Leader, Leadership, LeadershipChange
    from lockyard.fenced_writes import Fence
    from lockyard.guarantees import Guarantees
    from lockyard.keys import KeyKind, KeyLike, StateKey
    from lockyard.locks import DistributedLock, LockGuard, LockInfo
    from lockyard.observe import LockEvent
    from lockyard.rwlocks import ReadWriteGuard, ReadWriteLocks
    from lockyard.semaphores import Permit, Semaphores
    from lockyard.store import CasResult, StateStore
    from lockyard.workloads import connect_store

_LAZY = {
    "Connection": "lockyard.connection",
    "connect": "lockyard.connection",
    "Duration": "lockyard.durations",
    "Campaign": "lockyard.elections",
    "Elections": "lockyard.elections",
    "Leader": "lockyard.elections",
    "Leadership": "lockyard.elections",
    "LeadershipChange": "lockyard.elections",
    "Guarantees": "lockyard.guarantees",
    "KeyKind": "lockyard.keys",
    "KeyLike": "lockyard.keys",
    "StateKey": "lockyard.keys",
    "DistributedLock": "lockyard.locks",
    "LockGuard": "lockyard.locks",
    "LockInfo": "lockyard.locks",
    "LockEvent": "lockyard.observe",
    "Fence": "lockyard.fenced_writes",
    "Permit": "lockyard.semaphores",
    "Semaphores": "lockyard.semaphores",
    "ReadWriteGuard": "lockyard.rwlocks",
    "ReadWriteLocks": "lockyard.rwlocks",
    "CasResult": "lockyard.store",
    "StateStore": "lockyard.store",
    "connect_store": "lockyard.workloads",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "BackendConnectionError",
    "BackendError",
    "Campaign",
    "CasResult",
    "ConfigError",
    "Connection",
    "DistributedLock",
    "Duration",
    "Elections",
    "Fence",
    "FenceLostError",
    "FenceSlotError",
    "Guarantees",
    "HandleClosedError",
    "InvalidKeyError",
    "KeyKind",
    "KeyLike",
    "Leader",
    "Leadership",
    "LeadershipChange",
    "LockEvent",
    "LockExpiredError",
    "LockGuard",
    "LockInfo",
    "LockLostError",
    "LockTimeoutError",
    "LockUpgradeError",
    "OperationTimeoutError",
    "Permit",
    "ReadWriteGuard",
    "ReadWriteLocks",
    "SemaphoreLimitError",
    "Semaphores",
    "SerializationError",
    "StaleFenceError",
    "StateError",
    "StateKey",
    "StateStore",
    "UnexpectedReplyError",
    "__version__",
    "connect",
    "connect_store",
]
