"""The hooks the core calls, each a no-op fast path until an SDK is installed.

``OperationRunner`` hands every backend round trip to :func:`observe_operation`;
``DistributedLock`` and ``LockGuard`` methods carry the decorators below. With telemetry off, a
decorated call costs one extra Python call and :func:`~lockyard.telemetry.state.active` (about
0.2 us against a round trip of 100 us and more) and returns the undecorated coroutine itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from lockyard.errors import LockExpiredError, LockLostError, LockTimeoutError, OperationTimeoutError
from lockyard.telemetry import guards, names
from lockyard.telemetry.attributes import OPENING, BackendAttributes, for_backend_name
from lockyard.telemetry.state import Telemetry, active

if TYPE_CHECKING:
    from lockyard.locks import DistributedLock, LockGuard, LockHold
    from lockyard.operations import OperationRunner

P = ParamSpec("P")
T = TypeVar("T")
G = TypeVar("G", bound="LockGuard | None")
B = TypeVar("B")

#: The operations that are acquisition attempts (their result is an ``AcquireAttempt``).
ACQUIRE_OPERATIONS = frozenset({"acquire", "try_acquire"})
#: A cancelled call: ``lockyard.sync`` interrupts a wait with the second (``lockyard.lanes``).
CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)


class _Acquisition:
    """Counts the attempts of one ``acquire``/``try_acquire`` call, to see contention."""

    __slots__ = ("attempts", "contended")

    def __init__(self) -> None:
        self.attempts = 0
        self.contended = False

    def attempted(self, result: object) -> None:
        # An AcquireAttempt, or the fencing token (or None) of a first ``_take_if_unwanted``.
        refused = result is None or getattr(result, "fencing_token", 0) is None
        if self.attempts == 0 and refused:
            self.contended = True
        self.attempts += 1


_ACQUISITION: ContextVar[_Acquisition | None] = ContextVar("lockyard_acquisition", default=None)


def backend_attributes(runner: OperationRunner) -> BackendAttributes:
    described = runner.telemetry
    if described is None:
        # Opened by lockyard.connect: its config's attributes; opened by hand: the name only.
        described = runner.telemetry = OPENING.get() or for_backend_name(runner.backend)
    return described


def error_type(exc: BaseException) -> str:
    """``error.type``: Lockyard's and built-in exceptions by class name, others qualified."""
    kind = type(exc)
    if kind.__module__ in ("lockyard.errors", "builtins"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _fail(span: Span, exc: BaseException, kind: str) -> None:
    # Not span.record_exception(): messages can quote a value (SerializationError does).
    span.set_attribute(names.ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


# -- one backend round trip --------------------------------------------------------------------
def observe_operation(
    telemetry: Telemetry, runner: OperationRunner, operation: str, call: Coroutine[Any, Any, T]
) -> Coroutine[Any, Any, T]:
    return _observed_operation(telemetry, backend_attributes(runner), operation, call)


async def _observed_operation(
    telemetry: Telemetry, described: BackendAttributes, operation: str, call: Coroutine[Any, Any, T]
) -> T:
    span = telemetry.tracer.start_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={**described.span, names.DB_OPERATION_NAME: operation},
    )
    token = context.attach(trace.set_span_in_context(span))
    started = time.perf_counter()
    outcome, failure = "ok", None
    try:
        result = await call
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except BaseException as exc:
        outcome = "timeout" if isinstance(exc, OperationTimeoutError) else "error"
        failure = error_type(exc)
        _fail(span, exc, failure)
        raise
    finally:
        elapsed = time.perf_counter() - started
        context.detach(token)
        attributes = {
            **described.metric,
            names.DB_OPERATION_NAME: operation,
            names.OUTCOME: outcome,
        }
        if failure is not None:
            attributes[names.ERROR_TYPE] = failure
            telemetry.backend_errors.add(1, attributes)
        telemetry.operation_duration.record(elapsed, attributes)
        span.end()
    if operation in ACQUIRE_OPERATIONS:
        acquisition = _ACQUISITION.get()
        if acquisition is not None:
            acquisition.attempted(result)
    return result


# -- acquire / try_acquire -----------------------------------------------------------------------
def instrument_acquire(
    method: str,
) -> Callable[
    [Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, G]]],
    Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, G]],
]:
    """Wait time, outcome, contention and timeouts of ``method``; starts the guard's record."""

    def decorate(
        acquire: Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, G]],
    ) -> Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, G]]:
        @functools.wraps(acquire)
        def wrapper(
            locks: DistributedLock, /, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, G]:
            telemetry = active()
            if telemetry is None:
                return acquire(locks, *args, **kwargs)
            name = args[0] if args else kwargs.get("name")
            return _observed_acquire(
                telemetry, method, locks, name, acquire(locks, *args, **kwargs)
            )

        return wrapper

    return decorate


async def _observed_acquire(
    telemetry: Telemetry,
    method: str,
    locks: DistributedLock,
    name: object,
    call: Coroutine[Any, Any, G],
) -> G:
    described = backend_attributes(locks._run)
    span = telemetry.tracer.start_span(
        names.SPAN_ACQUIRE,
        attributes={
            **described.span,
            names.LOCK_METHOD: method,
            names.LOCK_NAME: name if isinstance(name, str) else repr(name),
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    acquisition = _Acquisition()
    counting = _ACQUISITION.set(acquisition)
    started = time.perf_counter()
    outcome = "error"
    guard: LockGuard | None = None
    try:
        guard = result = await call
        outcome = "busy" if guard is None else "acquired"
    except LockTimeoutError:
        outcome = "timeout"
        raise
    except CANCELLED:
        outcome = "cancelled"
        raise
    except BaseException as exc:
        _fail(span, exc, error_type(exc))
        raise
    finally:
        ended = time.perf_counter()
        _ACQUISITION.reset(counting)
        context.detach(token)
        metric = {**described.metric, names.LOCK_METHOD: method}
        telemetry.wait_duration.record(ended - started, {**metric, names.OUTCOME: outcome})
        if acquisition.contended or outcome in ("busy", "timeout"):
            telemetry.contentions.add(1, metric)
        if outcome == "timeout":
            telemetry.timeouts.add(1, metric)
        span.set_attribute(names.OUTCOME, outcome)
        if guard is not None:
            span.set_attribute(names.LOCK_FENCING_TOKEN, guard.fencing_token)
            telemetry.acquisitions.add(1, metric)
            guards.start(telemetry, guard, dict(described.metric), described.span, ended)
        span.end()
    return result


# -- the guard's end, breaks and hold() ----------------------------------------------------------
def instrument_guard(
    method: str,
) -> Callable[
    [Callable[Concatenate[LockGuard, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[LockGuard, P], Coroutine[Any, Any, T]],
]:
    """``release`` ends the record as released; ``LockExpiredError`` from either ends it lost."""

    def decorate(
        guard_method: Callable[Concatenate[LockGuard, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[LockGuard, P], Coroutine[Any, Any, T]]:
        @functools.wraps(guard_method)
        def wrapper(
            guard: LockGuard, /, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, T]:
            if active() is None:
                return guard_method(guard, *args, **kwargs)
            return _observed_guard(method, guard, guard_method(guard, *args, **kwargs))

        return wrapper

    return decorate


async def _observed_guard(method: str, guard: LockGuard, call: Coroutine[Any, Any, T]) -> T:
    try:
        result = await call
    except LockExpiredError:
        guards.end(guard, "lost", method)
        raise
    if method == "release":
        guards.end(guard, "released")
    return result


def instrument_break(
    break_lock: Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, bool]],
) -> Callable[Concatenate[DistributedLock, P], Coroutine[Any, Any, bool]]:
    """Counts the ``break_lock`` calls that removed a live lock."""

    @functools.wraps(break_lock)
    def wrapper(
        locks: DistributedLock, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, bool]:
        telemetry = active()
        if telemetry is None:
            return break_lock(locks, *args, **kwargs)
        return _observed_break(telemetry, locks, break_lock(locks, *args, **kwargs))

    return wrapper


async def _observed_break(
    telemetry: Telemetry, locks: DistributedLock, call: Coroutine[Any, Any, bool]
) -> bool:
    broke = await call
    if broke:
        telemetry.breaks.add(1, backend_attributes(locks._run).metric)
    return broke


def instrument_hold_enter(
    enter: Callable[[LockHold], Coroutine[Any, Any, LockGuard]],
) -> Callable[[LockHold], Coroutine[Any, Any, LockGuard]]:
    """``hold()``'s block runs inside the hold span: its store calls become its children."""

    @functools.wraps(enter)
    def wrapper(hold: LockHold) -> Coroutine[Any, Any, LockGuard]:
        if active() is None:
            return enter(hold)
        return _observed_enter(enter(hold))

    return wrapper


async def _observed_enter(call: Coroutine[Any, Any, LockGuard]) -> LockGuard:
    guard = await call
    guards.enter_block(guard)
    return guard


def instrument_hold_exit(
    exit_: Callable[Concatenate[LockHold, P], Coroutine[Any, Any, None]],
) -> Callable[Concatenate[LockHold, P], Coroutine[Any, Any, None]]:
    """A ``LockLostError`` out of ``hold()`` ends the record as lost (if nothing else did)."""

    @functools.wraps(exit_)
    def wrapper(hold: LockHold, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        if active() is None:
            return exit_(hold, *args, **kwargs)
        return _observed_exit(hold, exit_(hold, *args, **kwargs))

    return wrapper


async def _observed_exit(hold: LockHold, call: Coroutine[Any, Any, None]) -> None:
    guard = hold._guard
    try:
        await call
    except LockLostError:
        if guard is not None:
            guards.end(guard, "lost", "hold")
        raise
    finally:
        guards.leave_block(guard)
