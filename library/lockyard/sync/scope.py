"""A thread's ``with`` block over an async context manager that can lose what it holds.

``with ly.locks.hold(...)`` and ``with ly.elections.campaign(...)`` both run the async context
manager itself (``locks.hold()``, ``elections.campaign()``) in one task on the handle's loop for
as long as the block runs, so renewal and the loss deadline are the async core's. When that
task ends while the block still runs (the async context manager raised ``LockLostError``, or
the handle closed under it), the thread that entered the block learns it as docs/sync.md says:
the value's ``lost`` event is set, the thread's current or next Lockyard call raises
``LockLostError`` (:mod:`.threads`), leaving the block raises it too (or adds it as a note to
the block's own exception), and ``on_lost(value)`` runs on the loop thread.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry.context import Context

from lockyard.errors import LockLostError
from lockyard.sync import threads
from lockyard.telemetry import guards as telemetry_guards

if TYPE_CHECKING:
    from lockyard.connection import Connection as AsyncConnection
    from lockyard.sync.connection import Connection
    from lockyard.sync.leases import LeaseGuard

log = logging.getLogger("lockyard.sync")

S = TypeVar("S")


class BlockScope(abc.ABC, Generic[S]):
    """The machinery; a subclass says what to open and how to present what it yields."""

    def __init__(self, handle: Connection, on_lost: Callable[[S], None] | None) -> None:
        self._handle = handle
        self._on_lost = on_lost
        self._generation = -1
        self._state: threads.ThreadState | None = None
        self._value: S | None = None
        self._task: asyncio.Task[None] | None = None
        self._leave: asyncio.Event | None = None
        self._leaving = False
        self._lost: LockLostError | None = None
        self._span: Token[Context] | None = None

    # -- what a subclass provides ----------------------------------------------------------------
    @abc.abstractmethod
    def _open(self, connection: AsyncConnection) -> AbstractAsyncContextManager[Any]:
        """On the loop: the async context manager to run for the block."""

    @abc.abstractmethod
    def _present(self, entered: Any) -> S:
        """On the loop, before the block starts: the blocking form of what it yielded."""

    @abc.abstractmethod
    def _lost_flag(self, value: S) -> threading.Event: ...

    @abc.abstractmethod
    def _async_guard(self, value: S) -> Any:
        """The async guard underneath (its hold span is current in the block)."""

    # -- entering ------------------------------------------------------------------------------
    def __enter__(self) -> S:
        state = threads.current()
        state.raise_pending_loss()
        portal = self._handle._portal
        self._state = state
        self._generation = portal.generation
        try:
            value: S = portal.call(self._enter)
        except BaseException:
            if self._value is not None:  # interrupted as it got the lock: give the lock back
                with contextlib.suppress(Exception):
                    portal.start(self._exit).wait()
                state.forget(self)
            raise
        # As in the async block: the hold span is current here (when telemetry is on).
        self._span = telemetry_guards.attach(self._async_guard(value))
        return value

    async def _enter(self) -> S:
        connection = await self._handle._current()
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        self._leave = asyncio.Event()
        self._task = task = loop.create_task(self._run(self._open(connection), entered))
        task.add_done_callback(self._ended)
        try:
            await entered
        except asyncio.CancelledError:  # interrupted while acquiring: stop the acquisition too
            task.cancel()
            await asyncio.wait([task])
            raise
        assert self._value is not None
        return self._value

    async def _run(
        self, manager: AbstractAsyncContextManager[Any], entered: asyncio.Future[None]
    ) -> None:
        assert self._leave is not None
        try:
            async with manager as inner:
                if entered.done():  # the entering call was interrupted meanwhile
                    return
                # Before the block starts: a loss from now on must find the value.
                self._value = self._present(inner)
                entered.set_result(None)
                await self._leave.wait()
        except BaseException as exc:
            if not entered.done():
                if isinstance(exc, asyncio.CancelledError):
                    entered.cancel()
                else:
                    entered.set_exception(exc)
            raise

    # -- a loss while the block runs -----------------------------------------------------------
    def _ended(self, task: asyncio.Task[None]) -> None:
        """On the loop: the task ended. Unless the block is leaving, what it held is lost."""
        error = None if task.cancelled() else task.exception()  # retrieved: no stray warning
        value = self._value
        if self._leaving or value is None:
            return
        guard = self._async_guard(value)
        cause = "" if isinstance(error, LockLostError) else f" ({error!r})"
        if error is None:
            cause = " (the lockyard.sync handle was closed and released it)"
        lost = LockLostError(
            f"lock {guard.name!r} (fencing token {guard.fencing_token}) was lost while the "
            f"block ran{cause}"
        )
        self._lost = lost
        self._lost_flag(value).set()
        if self._state is not None:
            self._state.deliver(self, LockLostError(str(lost)))
        if self._on_lost is not None:
            try:
                self._on_lost(value)
            except Exception:
                log.exception("lockyard.sync: the on_lost callback of %r failed", guard.name)

    # -- leaving -------------------------------------------------------------------------------
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal = self._handle._portal
        try:
            if self._generation != portal.generation:
                return  # a forked child leaving a block the parent entered: the parent's lock
            portal.start(self._exit).wait()  # never interrupted: it must release
        except LockLostError as err:
            if self._value is not None:
                self._lost_flag(self._value).set()
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


G = TypeVar("G", bound="LeaseGuard[Any]")


class LeaseScope(BlockScope[G]):
    """``with`` over an async hold (``locks.hold``, ``semaphores.hold``, ``rwlocks.hold_read``):
    the block gets the blocking guard ``present(handle, guard)`` makes of the async one."""

    def __init__(
        self,
        handle: Connection,
        hold: AbstractAsyncContextManager[Any],
        present: Callable[[Connection, Any], G],
        on_lost: Callable[[G], None] | None,
    ) -> None:
        super().__init__(handle, on_lost)
        self._hold = hold
        self._present_as = present

    def _open(self, connection: AsyncConnection) -> AbstractAsyncContextManager[Any]:
        return self._hold

    def _present(self, entered: Any) -> G:
        guard = self._present_as(self._handle, entered)
        guard.renewed_on_loop = True
        return guard

    def _lost_flag(self, value: G) -> threading.Event:
        return value.lost

    def _async_guard(self, value: G) -> Any:
        return value._guard
