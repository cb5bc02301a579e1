"""Blocking locks: the async ``DistributedLock``, ``LockGuard`` and ``hold()`` run on the loop.

``with ly.locks.hold(name, ttl) as guard:`` runs the async ``hold()`` itself in a task on the
handle's loop for as long as the block runs: the same renewal every ttl/3 and the same loss
deadline. A thread cannot be cancelled, so when that task declares the lock lost, the thread
that entered the block learns it three ways (see docs/sync.md):

- ``guard.lost`` (a ``threading.Event``) is set;
- the Lockyard call that thread is blocked in is cancelled and raises ``LockLostError``, or,
  if it is not in one, its next Lockyard call raises it (once); leaving the block raises it
  too unless the block already raised it or another exception (then it becomes a note);
- ``on_lost(guard)``, if given, is called on the handle's loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from opentelemetry.context import Context

from lockyard.durations import Duration, lock_ttl_to_ms
from lockyard.errors import LockLostError
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S, check_lock_name
from lockyard.locks import DistributedLock as AsyncDistributedLock
from lockyard.locks import LockGuard as AsyncLockGuard
from lockyard.sync import threads
from lockyard.sync.bridge import Bridged, blocking, blocking_as
from lockyard.telemetry import guards as telemetry_guards

if TYPE_CHECKING:
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

    def _call(self, name: str, args: Any, kwargs: Any, *, deliver_losses: bool = True) -> Any:
        try:
            return super()._call(name, args, kwargs, deliver_losses=deliver_losses)
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
        check_lock_name(name)  # the async hold() checks these eagerly too: fail here, now
        lock_ttl_to_ms(ttl)
        return LockHold(self, name, ttl, timeout, auto_renew, on_lost)


class LockHold:
    """The context manager behind the blocking ``hold()``; see the module docstring."""

    def __init__(
        self,
        locks: DistributedLock,
        name: str,
        ttl: Duration,
        timeout: Duration,
        auto_renew: bool,
        on_lost: LossCallback | None,
    ) -> None:
        self._handle = locks._handle
        self._args = (name, ttl, timeout, auto_renew)
        self._on_lost = on_lost
        self._generation = -1
        self._state: threads.ThreadState | None = None
        self._guard: LockGuard | None = None
        self._task: asyncio.Task[None] | None = None
        self._leave: asyncio.Event | None = None
        self._leaving = False
        self._lost: LockLostError | None = None
        self._span: Token[Context] | None = None

    def __enter__(self) -> LockGuard:
        state = threads.current()
        state.raise_pending_loss()
        portal = self._handle._portal
        self._state = state
        try:
            guard: LockGuard = portal.call(self._enter)
        except BaseException:
            if self._guard is not None:  # interrupted as it got the lock: give the lock back
                with contextlib.suppress(Exception):
                    portal.start(self._exit).wait()
                state.forget(self)
            raise
        self._generation = guard._generation
        # As in the async block: the hold span is current here (when telemetry is on).
        self._span = telemetry_guards.attach(guard._guard)
        return guard

    async def _enter(self) -> LockGuard:
        connection = await self._handle._current()
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[AsyncLockGuard] = loop.create_future()
        self._leave = asyncio.Event()
        self._task = task = loop.create_task(
            self._hold(connection.locks, entered), name=f"lockyard-sync-hold:{self._args[0]}"
        )
        task.add_done_callback(self._ended)
        try:
            await entered
        except asyncio.CancelledError:  # interrupted while acquiring: stop the acquisition too
            task.cancel()
            await asyncio.wait([task])
            raise
        assert self._guard is not None
        return self._guard

    async def _hold(
        self, locks: AsyncDistributedLock, entered: asyncio.Future[AsyncLockGuard]
    ) -> None:
        assert self._leave is not None
        try:
            async with locks.hold(*self._args) as guard:
                if entered.done():  # the entering call was interrupted meanwhile
                    return
                # Before the block starts: a loss from now on must find the guard.
                self._guard = LockGuard(self._handle, guard)
                entered.set_result(guard)
                await self._leave.wait()
        except BaseException as exc:
            if not entered.done():
                if isinstance(exc, asyncio.CancelledError):
                    entered.cancel()
                else:
                    entered.set_exception(exc)
            raise

    def _ended(self, task: asyncio.Task[None]) -> None:
        """On the loop: the hold task ended. Unless the block is leaving, the lock is lost."""
        error = None if task.cancelled() else task.exception()  # retrieved: no stray warning
        guard = self._guard
        if self._leaving or guard is None:
            return
        cause = "" if isinstance(error, LockLostError) else f" ({error!r})"
        if error is None:
            cause = " (the lockyard.sync handle was closed and released it)"
        lost = LockLostError(
            f"lock {guard.name!r} (fencing token {guard.fencing_token}) was lost while the "
            f"block ran{cause}"
        )
        self._lost = lost
        guard.lost.set()
        if self._state is not None:
            self._state.deliver(self, LockLostError(str(lost)))
        if self._on_lost is not None:
            try:
                self._on_lost(guard)
            except Exception:
                log.exception("lockyard.sync: the on_lost callback of %r failed", guard.name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal = self._handle._portal
        if self._generation != portal.generation:
            telemetry_guards.detach(self._span)
            return  # a forked child leaving a block the parent entered: the parent's lock
        try:
            portal.start(self._exit).wait()  # never interrupted: it must release
        except LockLostError as err:
            if self._guard is not None:
                self._guard.lost.set()
            if exc is None:
                raise LockLostError(str(err)) from None
            if not isinstance(exc, LockLostError):
                exc.add_note(f"lockyard: {err}")
        finally:
            if self._state is not None:
                self._state.forget(self)
            telemetry_guards.detach(self._span)
            self._span = None

    async def _exit(self) -> None:
        self._leaving = True
        task = self._task
        assert task is not None
        assert self._leave is not None
        if task.done():
            if self._lost is not None:
                raise self._lost
            return
        self._leave.set()
        await asyncio.wait([task])
        task.result()


__all__ = ["DistributedLock", "LockGuard", "LockHold", "LossCallback"]
