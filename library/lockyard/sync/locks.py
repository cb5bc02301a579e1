"""Blocking locks: the async ``DistributedLock``, ``LockGuard`` and ``hold()`` run on the loop.

``with ly.locks.hold(name, ttl) as guard:`` runs the async ``hold()`` itself for as long as the
block runs (:mod:`.scope`): the same renewal every ttl/3 and the same loss deadline. A thread
cannot be cancelled, so a loss reaches it as ``guard.lost`` (a ``threading.Event``), as
``LockLostError`` from its current or next Lockyard call and from leaving the block, and as
``on_lost(guard)``; docs/sync.md says exactly when.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from lockyard.durations import Duration
from lockyard.fenced_writes import Fence
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S
from lockyard.locks import DistributedLock as AsyncDistributedLock
from lockyard.locks import LockGuard as AsyncLockGuard
from lockyard.locks import LockHold as AsyncLockHold
from lockyard.sync.bridge import Bridged, blocking, blocking_as, blocking_iter
from lockyard.sync.scope import BlockScope

if TYPE_CHECKING:
    from lockyard.connection import Connection as AsyncConnection
    from lockyard.sync.connection import Connection
    from lockyard.sync.portal import Portal

log = logging.getLogger("lockyard.sync")

LossCallback = Callable[["LockGuard"], None]


class LockGuard(Bridged):
    """One acquisition, blocking: ``extend``, ``release``, ``is_held``; ``with guard:``."""

    __slots__ = ("_generation", "_guard", "_handle", "lost")

    def __init__(self, handle: Connection, guard: AsyncLockGuard) -> None:
        self._handle = handle
        self._guard = guard
        self._generation = handle._portal.generation
        #: Set when the lock is known lost (as the async guard's ``lost``, for threads).
        self.lost: threading.Event = threading.Event()

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> AsyncLockGuard | None:
        return self._guard if self._generation == self._portal.generation else None

    async def _target(self) -> AsyncLockGuard:
        if self._generation != self._portal.generation:
            raise RuntimeError(
                f"lock guard {self.name!r} was acquired before os.fork(): it belongs to the "
                "parent process, which still holds and renews it"
            )
        return self._guard

    def _call(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        *,
        deliver_losses: bool = True,
        plain: bool = False,
    ) -> Any:
        try:
            return super()._call(name, args, kwargs, deliver_losses=deliver_losses, plain=plain)
        finally:
            if self._guard.lost.is_set():
                self.lost.set()

    extend = blocking(AsyncLockGuard.extend)
    release = blocking(AsyncLockGuard.release)
    is_held = blocking(AsyncLockGuard.is_held)

    @property
    def name(self) -> str:
        return self._guard.name

    @property
    def owner(self) -> str:
        return self._guard.owner

    @property
    def fencing_token(self) -> int:
        return self._guard.fencing_token

    @property
    def lease_ms(self) -> int:
        return self._guard.lease_ms

    @property
    def lease_deadline(self) -> float:
        return self._guard.lease_deadline

    @property
    def renewed_at(self) -> float:
        return self._guard.renewed_at

    @property
    def released(self) -> bool:
        return self._guard.released

    @property
    def fence(self) -> Fence:
        """What a fenced write (``ly.store.set(..., fence=guard)``) checks: this acquisition."""
        return self._guard.fence

    def __repr__(self) -> str:
        return f"lockyard.sync.LockGuard(name={self.name!r}, fencing_token={self.fencing_token})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The async guard's own __aexit__: release, and keep a failure beside the block's error.
        self._call("__aexit__", (exc_type, exc, tb), {}, deliver_losses=False)


def _guard(locks: DistributedLock, guard: AsyncLockGuard) -> LockGuard:
    return LockGuard(locks._handle, guard)


def _maybe_guard(locks: DistributedLock, guard: AsyncLockGuard | None) -> LockGuard | None:
    return None if guard is None else LockGuard(locks._handle, guard)


class DistributedLock(Bridged):
    """Named, expiring locks with fencing tokens, blocking (as ``lockyard.DistributedLock``)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Connection) -> None:
        self._handle = handle

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> AsyncDistributedLock | None:
        connection = self._handle._slot.connection
        return None if connection is None else connection.locks

    async def _target(self) -> AsyncDistributedLock:
        return (await self._handle._current()).locks

    def __repr__(self) -> str:
        return f"<lockyard.sync.DistributedLock of {self._handle!r}>"

    try_acquire = blocking_as(AsyncDistributedLock.try_acquire, _maybe_guard)
    acquire = blocking_as(AsyncDistributedLock.acquire, _guard)
    list_held = blocking(AsyncDistributedLock.list_held)
    break_lock = blocking(AsyncDistributedLock.break_lock)
    holder = blocking(AsyncDistributedLock.holder)
    observe = blocking_iter(AsyncDistributedLock.observe)
    observe_prefix = blocking_iter(AsyncDistributedLock.observe_prefix)

    def hold(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
        *,
        on_lost: LossCallback | None = None,
    ) -> LockHold:
        """``with locks.hold(...) as guard:`` acquire, renew every ttl/3, signal a loss.

        ``on_lost(guard)`` runs on the handle's loop thread when the lock is lost while the
        block runs: keep it short, and make no blocking call on this handle from it.
        """
        args = (name, ttl, timeout, auto_renew)
        # The async hold() itself, made now: it checks its arguments when called, as here.
        locks = self._target_now()
        hold = locks.hold(*args) if locks is not None else self._portal.call(self._make_hold, args)
        return LockHold(self._handle, hold, on_lost)

    async def _make_hold(self, args: tuple[str, Duration, Duration, bool]) -> AsyncLockHold:
        return (await self._target()).hold(*args)


class LockHold(BlockScope[LockGuard]):
    """The context manager behind the blocking ``hold()``: the async ``hold()`` on the loop."""

    def __init__(
        self, handle: Connection, hold: AsyncLockHold, on_lost: LossCallback | None
    ) -> None:
        super().__init__(handle, on_lost)
        self._hold = hold

    def _open(self, connection: AsyncConnection) -> AsyncLockHold:
        return self._hold

    def _present(self, entered: AsyncLockGuard) -> LockGuard:
        return LockGuard(self._handle, entered)

    def _lost_flag(self, value: LockGuard) -> threading.Event:
        return value.lost

    def _async_guard(self, value: LockGuard) -> AsyncLockGuard:
        return value._guard


__all__ = ["DistributedLock", "LockGuard", "LockHold", "LossCallback"]
