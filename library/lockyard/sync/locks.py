"""Blocking locks: the async ``DistributedLock``, ``LockGuard`` and ``hold()`` run on the loop.

``with ly.locks.hold(name, ttl) as guard:`` runs the async ``hold()`` itself for as long as the
block runs (:mod:`.scope`): the same renewal every ttl/3 and the same loss deadline. A thread
cannot be cancelled, so a loss reaches it as ``guard.lost`` (a ``threading.Event``), as
``LockLostError`` from its current or next Lockyard call and from leaving the block, and as
``on_lost(guard)``; docs/sync.md says exactly when.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from lockyard.durations import Duration
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S
from lockyard.locks import DistributedLock as AsyncDistributedLock
from lockyard.locks import LockGuard as AsyncLockGuard
from lockyard.locks import LockHold as AsyncLockHold
from lockyard.sync.bridge import blocking, blocking_as, blocking_iter
from lockyard.sync.leases import LeaseGuard
from lockyard.sync.part import ConnectionPart
from lockyard.sync.scope import LeaseScope

if TYPE_CHECKING:
    pass

log = logging.getLogger("lockyard.sync")

LossCallback = Callable[["LockGuard"], None]


class LockGuard(LeaseGuard[AsyncLockGuard]):
    """One acquisition, blocking: ``extend``, ``release``, ``is_held``; ``with guard:``."""

    what = "lock"

    extend = blocking(AsyncLockGuard.extend, direct=True)
    release = blocking(AsyncLockGuard.release, direct=True)
    is_held = blocking(AsyncLockGuard.is_held, direct=True)

    @property
    def renewed_at(self) -> float:
        return self._guard.renewed_at

    @staticmethod
    def _serves_lanes(guard: AsyncLockGuard) -> bool:
        return guard._locks.serves_lanes


def _guard(locks: DistributedLock, guard: AsyncLockGuard) -> LockGuard:
    return LockGuard(locks._handle, guard)


def _maybe_guard(locks: DistributedLock, guard: AsyncLockGuard | None) -> LockGuard | None:
    return None if guard is None else LockGuard(locks._handle, guard)


class DistributedLock(ConnectionPart):
    """Named, expiring locks with fencing tokens, blocking (as ``lockyard.DistributedLock``)."""

    __slots__ = ()
    part = "locks"

    try_acquire = blocking_as(AsyncDistributedLock.try_acquire, _maybe_guard, direct=True)
    # In the calling thread when the lock is free; a wait continues on the loop (lockyard.lanes).
    acquire = blocking_as(AsyncDistributedLock.acquire, _guard, direct=True)
    list_held = blocking(AsyncDistributedLock.list_held)
    break_lock = blocking(AsyncDistributedLock.break_lock)
    holder = blocking(AsyncDistributedLock.holder, direct=True)
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
        hold: AsyncLockHold = (
            locks.hold(*args)
            if locks is not None
            else self._portal.call(self._make, "hold", args, {})
        )
        return LockHold(self._handle, hold, LockGuard, on_lost)


class LockHold(LeaseScope[LockGuard]):
    """The context manager behind the blocking ``hold()``: the async ``hold()`` on the loop."""


__all__ = ["DistributedLock", "LockGuard", "LockHold", "LossCallback"]
