"""Blocking semaphores and read-write locks: ``ly.semaphores`` and ``ly.rwlocks``.

One line per async method (:mod:`.bridge`); ``hold()``, ``hold_read()`` and ``hold_write()``
run the async holds for the block (:mod:`.scope`), with the loss signal of ``locks.hold()``.
A thread holding a read-write lock that asks for it again is refused with
``LockUpgradeError``, as a task is in the async API (the thread is the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockyard.durations import Duration
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S
from lockyard.permits import PermitGuard as AsyncPermitGuard
from lockyard.rwlocks import ReadWriteGuard as AsyncReadWriteGuard
from lockyard.rwlocks import ReadWriteLocks as AsyncReadWriteLocks
from lockyard.semaphores import Permit as AsyncPermit
from lockyard.semaphores import Semaphores as AsyncSemaphores
from lockyard.sync.bridge import blocking, blocking_as
from lockyard.sync.leases import LeaseGuard
from lockyard.sync.part import ConnectionPart
from lockyard.sync.scope import LeaseScope

if TYPE_CHECKING:
    from lockyard.sync.connection import Connection


class _PermitGuard(LeaseGuard[Any]):
    extend = blocking(AsyncPermitGuard.extend)
    release = blocking(AsyncPermitGuard.release)
    is_held = blocking(AsyncPermitGuard.is_held)

    @property
    def weight(self) -> int:
        weight: int = self._guard.weight
        return weight

    @property
    def kind(self) -> str:
        """``semaphore``, ``rwlock-read`` or ``rwlock-write`` (its Lease's kind label)."""
        kind: str = self._guard.kind
        return kind

    @property
    def space(self) -> str:
        space: str = self._guard.space
        return space


class Permit(_PermitGuard):
    """One semaphore permit, blocking: ``extend``, ``release``, ``is_held``; ``with permit:``."""

    what = "semaphore permit"

    @property
    def limit(self) -> int:
        limit: int = self._guard.limit
        return limit


class ReadWriteGuard(_PermitGuard):
    """One hold of a read-write lock, blocking; ``mode`` is ``"read"`` or ``"write"``."""

    what = "read-write lock"

    upgrade = blocking(AsyncReadWriteGuard.upgrade)

    @property
    def mode(self) -> str:
        mode: str = self._guard.mode
        return mode


class _Facade(ConnectionPart):
    def _scope(
        self,
        method: str,
        args: tuple[Any, ...],
        present: Callable[[Connection, Any], Any],
        on_lost: Callable[[Any], None] | None,
    ) -> LeaseScope[Any]:
        # The async hold itself, made now: it checks its arguments when called, as here.
        target = self._target_now()
        if target is not None:
            hold = getattr(target, method)(*args)
        else:
            hold = self._portal.call(self._make, method, args, {})
        return LeaseScope(self._handle, hold, present, on_lost)


def _permit(facade: _Facade, permit: AsyncPermit) -> Permit:
    return Permit(facade._handle, permit)


def _maybe_permit(facade: _Facade, permit: AsyncPermit | None) -> Permit | None:
    return None if permit is None else Permit(facade._handle, permit)


def _rw(facade: _Facade, guard: AsyncReadWriteGuard) -> ReadWriteGuard:
    return ReadWriteGuard(facade._handle, guard)


def _maybe_rw(facade: _Facade, guard: AsyncReadWriteGuard | None) -> ReadWriteGuard | None:
    return None if guard is None else ReadWriteGuard(facade._handle, guard)


class Semaphores(_Facade):
    """Named counting semaphores, blocking (as ``lockyard.Semaphores``)."""

    part = "semaphores"

    try_acquire = blocking_as(AsyncSemaphores.try_acquire, _maybe_permit)
    acquire = blocking_as(AsyncSemaphores.acquire, _permit)
    list_held = blocking(AsyncSemaphores.list_held)
    break_permit = blocking(AsyncSemaphores.break_permit)

    def hold(
        self,
        name: str,
        limit: int,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
        *,
        on_lost: Callable[[Permit], None] | None = None,
    ) -> LeaseScope[Permit]:
        """``with semaphores.hold(...) as permit:`` acquire, renew every ttl/3, signal a loss
        (as ``locks.hold()`` does)."""
        return self._scope("hold", (name, limit, ttl, timeout, auto_renew), Permit, on_lost)


class ReadWriteLocks(_Facade):
    """Named read-write locks, blocking (as ``lockyard.ReadWriteLocks``)."""

    part = "rwlocks"

    try_acquire_read = blocking_as(AsyncReadWriteLocks.try_acquire_read, _maybe_rw)
    try_acquire_write = blocking_as(AsyncReadWriteLocks.try_acquire_write, _maybe_rw)
    acquire_read = blocking_as(AsyncReadWriteLocks.acquire_read, _rw)
    acquire_write = blocking_as(AsyncReadWriteLocks.acquire_write, _rw)
    list_held = blocking(AsyncReadWriteLocks.list_held)
    break_holder = blocking(AsyncReadWriteLocks.break_holder)

    def hold_read(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
        *,
        on_lost: Callable[[ReadWriteGuard], None] | None = None,
    ) -> LeaseScope[ReadWriteGuard]:
        """``with rwlocks.hold_read(...) as guard:`` as ``locks.hold()``, for reading."""
        return self._scope("hold_read", (name, ttl, timeout, auto_renew), ReadWriteGuard, on_lost)

    def hold_write(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
        *,
        on_lost: Callable[[ReadWriteGuard], None] | None = None,
    ) -> LeaseScope[ReadWriteGuard]:
        """As :meth:`hold_read`, for writing."""
        return self._scope("hold_write", (name, ttl, timeout, auto_renew), ReadWriteGuard, on_lost)
