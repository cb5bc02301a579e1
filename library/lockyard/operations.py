"""The boundary every backend call passes through: one timeout and one error translation.

Each backend supplies one ``translate`` function that maps its driver's exceptions (by class or
error code, most specific first) onto the :mod:`lockyard.errors` tree. This module applies it
and the operation timeout uniformly, so no backend call can hang or leak a driver exception.

The timeout is enforced by one watchdog timer per runner rather than an ``asyncio.timeout`` per
call: arming a timer per call (a heap push and a cancel) costs 5-10 us, a tenth of a Redis round
trip, while every call of a runner has the same timeout, so deadlines arrive in call order. The
in-flight calls sit in a dict; one ``call_at`` waits for the earliest deadline and, when it
passes, cancels the calls that are overdue (exactly as ``asyncio.timeout`` would:
``task.cancel()``, then ``uncancel()`` when the cancellation arrives and ``OperationTimeoutError``
unless someone else cancelled the task too) and re-arms for the next deadline. It fires at most
about once per timeout period while calls keep coming, and not at all when the runner is idle.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from lockyard.errors import HandleClosedError, OperationTimeoutError, StateError
from lockyard.telemetry.hooks import observe_operation
from lockyard.telemetry.state import active

if TYPE_CHECKING:
    from lockyard.telemetry.attributes import BackendAttributes

T = TypeVar("T")

ErrorTranslator = Callable[[BaseException], StateError | None]


def default_translate(exc: BaseException) -> StateError | None:
    """Backends without a driver raise nothing to translate."""
    return None


class _Call:
    """One in-flight call: its task, its deadline (loop time), and whether it was cancelled."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.expired = False


class _Watchdog:
    """The in-flight calls of one runner on one event loop, and the timer for the oldest."""

    __slots__ = ("calls", "loop", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls: dict[_Call, None] = {}
        self.timer: asyncio.TimerHandle | None = None
        #: When the timer fires (loop time); infinite while none is armed.
        self.timer_at = math.inf

    def watch(self, task: asyncio.Task[object], timeout: float) -> _Call:
        """Track ``task``'s call until :meth:`discard`; cancel it if ``timeout`` passes first."""
        deadline = self.loop.time() + timeout
        call = _Call(task, deadline)
        self.calls[call] = None
        if deadline < self.timer_at:  # no timer armed (a runner's deadlines come in call order)
            if self.timer is not None:
                self.timer.cancel()
            self._arm(deadline)
        return call

    def discard(self, call: _Call) -> None:
        # The timer stays armed even when nothing is in flight: re-arming per call is the very
        # cost this class avoids; a timer that finds nothing overdue just re-arms or lapses.
        self.calls.pop(call, None)

    def _arm(self, when: float) -> None:
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer, self.timer_at = None, math.inf
        now = self.loop.time()
        overdue = [call for call in self.calls if call.deadline <= now]
        for call in overdue:
            del self.calls[call]
            call.expired = True
            call.task.cancel()
        if self.calls:
            self._arm(min(c.deadline for c in self.calls))


class OperationRunner:
    """Runs backend coroutines under the operation timeout, translating driver errors."""

    __slots__ = ("_watchdog", "backend", "closed", "telemetry", "timeout", "translate")

    def __init__(self, backend: str, timeout: float, translate: ErrorTranslator) -> None:
        self.backend = backend
        self.timeout = timeout
        self.translate = translate
        self._watchdog: _Watchdog | None = None
        #: What telemetry may say about this backend (set when a connection opens it).
        self.telemetry: BackendAttributes | None = None
        #: Set by the backend's close(): every call from then on is refused (see :meth:`close`).
        self.closed = False

    def close(self) -> None:
        """Refuse every later call with ``HandleClosedError``. Drivers reconnect on demand
        (redis-py's pool after ``disconnect()``), so a call after the backend closed would open
        a connection that nothing ever closes; asking first costs one attribute read."""
        self.closed = True

    def __call__(self, operation: str, awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
        telemetry = active()  # None until an OpenTelemetry SDK is installed: the fast path
        if telemetry is None:
            return self._call(operation, awaitable)
        return observe_operation(telemetry, self, operation, self._call(operation, awaitable))

    async def _call(self, operation: str, awaitable: Awaitable[T]) -> T:
        # One frame for the watchdog and the translation: this runs around every backend call.
        if self.closed:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # a coroutine never started: not a "never awaited" warning
            raise HandleClosedError(
                f"{self.backend}: {operation} on a closed handle: open a new one (lockyard.connect)"
            )
        loop = asyncio._get_running_loop()  # None: driven in a calling thread (lockyard.lanes)
        task = None if loop is None else asyncio.current_task(loop)
        call: _Call | None = None
        # Without a task (a coroutine driven by hand, or in a lane) there is no watchdog: a
        # lane's blocking socket carries the operation timeout itself.
        if task is not None:
            cancelling = task.cancelling()
            watchdog = self._watchdog
            if watchdog is None or watchdog.loop is not loop:
                watchdog = self._watchdog = _Watchdog(task.get_loop())
            call = watchdog.watch(task, self.timeout)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if call is not None and call.expired:
                call.expired = False  # our cancellation arrived: withdraw it, once
                assert task is not None
                if task.uncancel() <= cancelling:
                    raise self._timed_out(operation) from None
            raise
        except StateError:
            raise
        except TimeoutError as exc:  # a driver's own timeout
            mapped = self.translate(exc)
            if mapped is not None and not isinstance(mapped, OperationTimeoutError):
                raise mapped from exc
            raise self._timed_out(operation) from exc
        except Exception as exc:
            mapped = self.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            if call is not None:
                if call.expired:
                    # Cancelled by us, but the call swallowed the cancellation and returned.
                    assert task is not None
                    task.uncancel()
                else:
                    assert watchdog is not None
                    watchdog.discard(call)

    def _timed_out(self, operation: str) -> OperationTimeoutError:
        return OperationTimeoutError(
            f"{self.backend}: {operation} took longer than the operation timeout of "
            f"{self.timeout:g}s (raise operation_timeout, or check the backend's load)"
        )
