"""A held lock's telemetry: its hold span, the held-locks count and its hold time, ended once.

A guard's record starts when ``acquire``/``try_acquire`` hands the guard out and ends at the
first of: its release (``released``), its loss (``lost``: extend or release found it gone, or
``hold()`` gave it up), or the guard being garbage-collected unreleased (``dropped``: the lock
then expires on the backend by itself, unseen).

A dropped guard's record is ended on its event loop just after the collection, never inside
it: the collector runs finalizers wherever the thread happens to be, perhaps inside ``_LOCK``
or inside an SDK instrument's lock (both non-reentrant), and ending the record there blocked
the thread on itself for good (an event loop frozen, Ctrl-C ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import weakref
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from lockyard import lanes
from lockyard.telemetry import names
from lockyard.telemetry.attributes import AttributeMap

if TYPE_CHECKING:
    from lockyard.locks import LockGuard
    from lockyard.telemetry.state import Telemetry


class GuardRecord:
    """One acquisition's telemetry; see the module docstring."""

    __slots__ = ("_finalizer", "context_token", "ended", "metric", "span", "started", "telemetry")

    def __init__(
        self, telemetry: Telemetry, metric: AttributeMap, span: Span, started: float
    ) -> None:
        self.telemetry = telemetry
        self.metric = metric
        self.span = span
        self.started = started
        self.ended = False
        #: The context token of ``hold()``'s block, which runs inside the hold span.
        self.context_token: Token[Context] | None = None
        self._finalizer: weakref.finalize[..., Any] | None = None

    def end(self, how: str, detected_by: str | None = None) -> None:
        with _LOCK:
            if self.ended:
                return
            self.ended = True
        if self._finalizer is not None:
            self._finalizer.detach()
        telemetry = self.telemetry
        attributes = {**self.metric, names.LOCK_END: how}
        telemetry.hold_duration.record(time.perf_counter() - self.started, attributes)
        telemetry.held.add(-1, self.metric)
        self.span.set_attribute(names.LOCK_END, how)
        if how == "lost":
            lost = dict(self.metric)
            if detected_by is not None:
                lost[names.LOCK_DETECTED_BY] = detected_by
                self.span.set_attribute(names.LOCK_DETECTED_BY, detected_by)
            telemetry.losses.add(1, lost)
            self.span.set_status(Status(StatusCode.ERROR, "lock lost"))
        self.span.end()


_LOCK = threading.Lock()
_RECORDS: weakref.WeakKeyDictionary[LockGuard, GuardRecord] = weakref.WeakKeyDictionary()
#: Records of guards collected unreleased, not ended yet (SimpleQueue.put is safe in finalizers).
_DROPPED: queue.SimpleQueue[GuardRecord] = queue.SimpleQueue()


def _dropped(record: GuardRecord, loop: asyncio.AbstractEventLoop | None) -> None:
    """The finalizer of an unreleased guard: queue its record, to be ended outside any lock."""
    _DROPPED.put(record)
    if loop is not None:
        # A closed loop: the next acquisition or release anywhere ends it instead.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(end_dropped)


def end_dropped() -> None:
    """End the records of guards collected unreleased (``dropped``)."""
    while not _DROPPED.empty():  # the usual case, on every acquisition and release: no raise
        try:
            record = _DROPPED.get_nowait()
        except queue.Empty:  # another thread took the last one
            return
        record.end("dropped")


def start(
    telemetry: Telemetry,
    guard: LockGuard,
    metric: AttributeMap,
    span_attributes: AttributeMap,
    started: float,
) -> None:
    """Count ``guard`` as held and open its hold span (a child of the caller's context)."""
    end_dropped()
    span = telemetry.tracer.start_span(
        names.SPAN_HOLD,
        attributes={
            **span_attributes,
            names.LOCK_NAME: guard.name,
            names.LOCK_FENCING_TOKEN: guard.fencing_token,
            names.LOCK_TTL_MS: guard.lease_ms,
        },
    )
    record = GuardRecord(telemetry, metric, span, started)
    telemetry.held.add(1, metric)
    # Called by the acquiring coroutine: its loop (a lane's handle's, driven in a thread).
    loop = lanes.loop()
    record._finalizer = finalizer = weakref.finalize(guard, _dropped, record, loop)
    finalizer.atexit = False  # at exit the SDK may be shut down already: nothing to tell it
    with _LOCK:
        _RECORDS[guard] = record


def record_of(guard: LockGuard | None) -> GuardRecord | None:
    if guard is None:
        return None
    with _LOCK:
        return _RECORDS.get(guard)


def end(guard: LockGuard, how: str, detected_by: str | None = None) -> None:
    """End ``guard``'s record (``released`` or ``lost``); later calls do nothing."""
    end_dropped()
    record = record_of(guard)
    if record is not None:
        record.end(how, detected_by)


def enter_block(guard: LockGuard) -> None:
    """Make the hold span current while ``hold()``'s block runs (same task, same context)."""
    record = record_of(guard)
    if record is not None and record.context_token is None:
        record.context_token = context.attach(trace.set_span_in_context(record.span))


def leave_block(guard: LockGuard | None) -> None:
    record = record_of(guard)
    if record is not None and record.context_token is not None:
        token, record.context_token = record.context_token, None
        context.detach(token)


def attach(guard: LockGuard) -> Token[Context] | None:
    """Make ``guard``'s hold span current in the calling context (a thread's ``with`` block)."""
    record = record_of(guard)
    if record is None:
        return None
    return context.attach(trace.set_span_in_context(record.span))


def detach(token: Token[Context] | None) -> None:
    if token is not None:
        context.detach(token)
