"""One event loop in one daemon thread per sync handle, and the blocking call into it.

Every blocking method of :mod:`lockyard.sync` runs the async core's own coroutine on the
handle's loop and waits for it (:meth:`Portal.call`), so there is one implementation of the
semantics. Any number of threads may call at once: their coroutines run concurrently on the
loop, exactly as concurrent tasks would.

A wait interrupted in the calling thread (``KeyboardInterrupt``, an exception a signal handler
raises) cancels the coroutine, as cancelling the async call would (a queued ``acquire`` leaves
the queue), waits briefly for it to finish, and re-raises.

Fork (Celery prefork, gunicorn): the child must not touch the parent's sockets, or it would
read the parent's replies and corrupt its protocol state. After ``os.fork()`` the child
abandons the inherited loop and connection without closing them (closing would speak on the
parent's connections; they stay referenced, so no destructor closes them either) and starts a
new loop thread on its first call.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from lockyard._callers import CALLER
from lockyard.errors import HandleClosedError
from lockyard.sync import threads
from lockyard.sync.lane import ThreadLane

log = logging.getLogger("lockyard.sync")

R = TypeVar("R")

#: How long an interrupted call waits for its coroutine's clean-up (leaving a queue).
INTERRUPT_GRACE_S = 2.0
#: How long closing a handle dropped unclosed (or still open at interpreter exit) may take.
EXIT_CLOSE_TIMEOUT_S = 5.0


class PendingCall(Generic[R]):
    """One call on a portal's loop, waited for by one thread.

    ``fn(*args)`` runs on the loop and returns the coroutine to run there as a task (a plain
    function may build it from objects that belong to the loop).
    """

    __slots__ = (
        "_args",
        "_caller",
        "_done",
        "_error",
        "_fn",
        "_interrupt",
        "_loop",
        "_result",
        "_task",
        "context",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        caller: object,
        context: contextvars.Context | None = None,
    ) -> None:
        self._loop = loop
        #: The context the task runs in: a copy of the calling thread's, as ``create_task``
        #: copies the creating task's (an OpenTelemetry span there is the call's parent).
        self.context = context if context is not None else contextvars.copy_context()
        self._caller = caller
        self._fn = fn
        self._args = args
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._task: asyncio.Task[R] | None = None
        self._result: R | None = None
        self._error: BaseException | None = None
        self._interrupt: tuple[BaseException, object | None] | None = None

    # -- on the loop ---------------------------------------------------------------------------
    def _start(self) -> None:
        if self._interrupt is not None:  # interrupted before it began
            self._error = self._interrupt[0]
            self._done.release()
            return
        try:
            # The task runs as the calling thread (a read-write lock refuses the same caller
            # twice), in the context it was given.
            context = self.context
            context.run(CALLER.set, self._caller)
            coroutine = self._fn(*self._args)
            self._task = self._loop.create_task(coroutine, context=context)  # type: ignore[arg-type]
        except BaseException as exc:  # the function failed before returning a coroutine
            self._error = exc
            self._done.release()
            return
        self._task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Task[R]) -> None:
        try:
            self._result = task.result()
        except asyncio.CancelledError:
            interrupt = self._interrupt
            self._error = (
                interrupt[0]
                if interrupt is not None
                else concurrent.futures.CancelledError("the lockyard.sync handle was closed")
            )
        except BaseException as exc:
            self._error = exc
        self._done.release()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- from any thread -----------------------------------------------------------------------
    def interrupt(self, error: BaseException, key: object | None = None) -> None:
        """Cancel the coroutine; the waiting thread then raises ``error`` (if it got cancelled)."""
        if self._interrupt is None:
            self._interrupt = (error, key)
        with contextlib.suppress(RuntimeError):  # a closed loop: the call has ended anyway
            self._loop.call_soon_threadsafe(self._cancel)

    # -- in the calling thread -----------------------------------------------------------------
    def wait(self, state: threads.ThreadState | None = None) -> R:
        """Block until the coroutine ends; its result, or its exception raised here.

        With the calling thread's ``state``, the call can be interrupted (a lock loss, or
        :func:`lockyard.sync.interrupt`).
        """
        if state is not None:
            # Published before the check below, and ThreadState.deliver appends before it
            # reads ``call``: a loss racing with this call is seen by one side or both (an
            # interrupt twice is harmless).
            state.call = self
            if state.losses:
                lost_key, lost_error = state.losses[0]
                self.interrupt(lost_error, lost_key)
        try:
            self._done.acquire()
        except BaseException:
            # Interrupted here (KeyboardInterrupt): cancel there, and let its clean-up run.
            self.interrupt(concurrent.futures.CancelledError())
            self._done.acquire(timeout=INTERRUPT_GRACE_S)
            raise
        finally:
            if state is not None:
                state.call = None
        error = self._error
        if error is not None:
            self._error = None  # no cycle through the traceback
            interrupt = self._interrupt
            if state is not None and interrupt is not None and error is interrupt[0]:
                state.forget(interrupt[1])  # delivered now: not again at the next call
            raise error
        return self._result  # type: ignore[return-value]


class Portal:
    """The loop thread of one handle: started on first use, restarted after a fork."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._closed = False
        #: Bumped by every fork: objects from an earlier generation belong to the parent.
        self.generation = 0
        self._after_fork: list[Callable[[], None]] = []
        #: Where direct calls run in their calling thread (:mod:`.lane`).
        self.lane = ThreadLane(self)
        _PORTALS.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def on_fork(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in a forked child, before its first call (drop parent state)."""
        self._after_fork.append(callback)

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._closed:
                raise _closed_error(self.name)
            if self._loop is None:
                self._loop = self._start_thread()
            return self._loop

    def _start_thread(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        running = threading.Event()
        loop.call_soon(running.set)
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"{self.name}-loop", daemon=True
        )
        thread.start()
        running.wait()
        self._thread = thread
        self._loop_ident = thread.ident
        return loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    def in_loop_thread(self) -> bool:
        return self._loop_ident == threading.get_ident()

    def start(
        self,
        fn: Callable[..., Awaitable[R]],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> PendingCall[R]:
        """Run ``fn(*args)`` on the loop (the coroutine is made there); wait with ``.wait()``."""
        if self._loop_ident == threading.get_ident():
            raise RuntimeError(
                f"a blocking Lockyard call from {self.name}'s own event loop would deadlock: "
                "use the async API there"
            )
        loop = self.loop()
        call = PendingCall(loop, fn, args, threads.current(), context)
        try:
            loop.call_soon_threadsafe(call._start)
        except RuntimeError:  # closed meanwhile
            raise _closed_error(self.name) from None
        return call

    def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run ``fn(*args)`` on the loop and block until it ends (interruptibly)."""
        return self.start(fn, *args).wait(threads.current())

    def close(
        self,
        final: Callable[[], Coroutine[Any, Any, None]] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Cancel what runs on the loop, await ``final()`` there, and stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(_shut_down(final), loop)
        try:
            future.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
                # A later thread may get the dead one's ident: it is no longer the loop's.
                self._loop_ident = None

    def _forget_parent(self) -> None:
        """In a forked child: abandon the parent's loop (never closed here) and start anew."""
        if self._loop is not None:
            _ABANDONED.append(self._loop)
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._loop_ident = None
        self.generation += 1
        for callback in self._after_fork:
            callback()


async def _shut_down(final: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    """Cancel what runs on the loop, then await ``final()`` (closing the backend), then cancel
    what that left. In this order a ``hold()`` block still running releases its lock while the
    backend is open: a closed backend refuses every call (``HandleClosedError``)."""
    await _cancel_the_others()
    try:
        if final is not None:
            await final()
    finally:
        await _cancel_the_others()


async def _cancel_the_others() -> None:
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _closed_error(name: str) -> HandleClosedError:
    return HandleClosedError(f"{name} is closed: open a new handle (lockyard.sync.connect)")


_PORTALS: weakref.WeakSet[Portal] = weakref.WeakSet()
#: What forked children inherited and must neither use nor close: kept alive on purpose.
_ABANDONED: list[object] = []


def abandon(thing: object) -> None:
    """Keep ``thing`` (a parent's connection, in a forked child) alive and untouched."""
    _ABANDONED.append(thing)


def _after_fork_in_child() -> None:
    for portal in list(_PORTALS):
        portal._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)
