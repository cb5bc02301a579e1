"""Lockyard: shared state and distributed locks for Kubernetes workloads.

>>> async with lockyard.connect("redis://redis:6379/0?prefix=orders") as ly:
...     if await ly.store.check_and_set("orders:acme:dedup:msg-1", "seen", ttl=3600):
...         async with ly.locks.hold("invoice-42", ttl=10) as guard:
...             ...  # guard.fencing_token goes to the protected resource
"""

from lockyard.connection import Connection, connect
from lockyard.durations import Duration
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    InvalidKeyError,
    LockExpiredError,
    LockLostError,
    LockTimeoutError,
    OperationTimeoutError,
    SerializationError,
    StateError,
)
from lockyard.guarantees import Guarantees
from lockyard.keys import KeyKind, KeyLike, StateKey
from lockyard.locks import DistributedLock, LockGuard, LockInfo
from lockyard.store import CasResult, StateStore
from lockyard.workloads import connect_store

__version__ = "0.1.0"

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "CasResult",
    "ConfigError",
    "Connection",
    "DistributedLock",
    "Duration",
    "Guarantees",
    "InvalidKeyError",
    "KeyKind",
    "KeyLike",
    "LockExpiredError",
    "LockGuard",
    "LockInfo",
    "LockLostError",
    "LockTimeoutError",
    "OperationTimeoutError",
    "SerializationError",
    "StateError",
    "StateKey",
    "StateStore",
    "__version__",
    "connect",
    "connect_store",
]
