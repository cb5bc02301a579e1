"""The exception tree of Lockyard.

Every error a caller sees from Lockyard derives from :class:`StateError`; driver exceptions are
translated in one boundary function per backend (by class or error code, never by message text)
and chained with ``raise ... from``::

    StateError
    ├── BackendConnectionError      the server cannot be reached (refused, reset, DNS, TLS)
    │   └── UnexpectedReplyError    a reply of the wrong shape, type or size for its operation
    ├── BackendError                the server answered with a refusal (auth, limits, bad data)
    ├── OperationTimeoutError       an operation outlived the operation timeout (also TimeoutError)
    ├── HandleClosedError           an operation on a handle after its close() (also RuntimeError)
    ├── LockTimeoutError            acquire() gave up waiting (also TimeoutError)
    ├── LockExpiredError            extend()/release() on a lock this guard no longer holds
    ├── LockLostError               a hold() block whose lock was lost while it ran
    │   ├── FenceLostError          a fenced write whose guard no longer holds its lease
    │   └── StaleFenceError         a resource outside Lockyard refused an older fencing token
    ├── LockUpgradeError            a read-write lock held for reading cannot become a write lock
    ├── SerializationError          a value cannot be used as asked (non-integer counter, overflow)
    ├── InvalidKeyError             a malformed key (also ValueError)
    └── ConfigError                 a bad URL, setting or missing extra (also ValueError)
        ├── SemaphoreLimitError     a semaphore used with a limit other than its first one
        └── FenceSlotError          a fenced write whose guard and key cannot share a shard
"""

from __future__ import annotations


class StateError(Exception):
    """Root of every error Lockyard raises."""


class BackendConnectionError(StateError):
    """The backend cannot be reached; retrying after it is back succeeds on the same handle."""

    @classmethod
    def not_answering(cls, where: str, timeout: float) -> BackendConnectionError:
        """A server that takes the connection but does not answer it within ``timeout`` while
        a handle opens (stopped, hung, starting up or overloaded). Every backend reports it
        this way: unreachable for now, like a server that refuses the connection, and not an
        operation that ran too long (opening may run under a longer timeout of its own)."""
        return cls(
            f"{where}: no answer within {timeout:g}s while connecting: the server is down, "
            "starting up or overloaded (raise operation_timeout if it is only slow to answer)"
        )


class UnexpectedReplyError(BackendConnectionError):
    """A reply that is no answer to the operation sent: the wrong shape or type, or larger than
    anything the store can hold. Whether the operation took effect is unknown, as after a lost
    connection; the message names the operation, what it expects and what came back."""


class BackendError(StateError):
    """The backend refused the operation (authentication, permissions, limits, bad request)."""


class OperationTimeoutError(StateError, TimeoutError):
    """An operation took longer than the configured operation timeout."""


class HandleClosedError(StateError, RuntimeError):
    """An operation on a handle that was closed: open a new one. Nothing was sent; a closed
    handle never opens a connection again (nothing would ever close it)."""


class LockTimeoutError(StateError, TimeoutError):
    """``acquire()`` could not obtain the lock before its timeout ran out."""


class LockExpiredError(StateError):
    """The guard no longer holds its lock: it expired, was released, or another owner took it."""


class LockLostError(StateError):
    """The lock of a ``hold()`` block was lost while the block ran; the block was cancelled."""


class SerializationError(StateError):
    """A stored value cannot be used as asked (a counter that is not an integer, an overflow)."""


class InvalidKeyError(StateError, ValueError):
    """A key or key segment is malformed; the message names the segment and the rule."""


class ConfigError(StateError, ValueError):
    """A connection URL, setting or missing optional extra; the message names the fix."""


class FenceLostError(LockLostError):
    """A fenced write was refused: its guard's lease is gone (expired, broken, released or
    taken over); nothing was written."""


class StaleFenceError(LockLostError):
    """A resource guarded by fencing tokens refused a token older than one it has seen."""


class LockUpgradeError(StateError):
    """A task holding a read-write lock asked for the other mode of the same lock."""


class SemaphoreLimitError(ConfigError):
    """A semaphore was used with a limit other than the one it was first used with."""


class FenceSlotError(ConfigError):
    """The guard's keys and the written key cannot be checked in one round trip (they live on
    different Redis Cluster shards); the message says how to co-locate them."""
