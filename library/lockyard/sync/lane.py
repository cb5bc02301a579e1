"""The direct lane of a handle: the async core's coroutine driven in the calling thread.

A blocking call normally runs on the handle's loop thread (:mod:`.portal`), which costs two
thread wake-ups per call, about one loopback round trip more. A call marked direct in the
facade (``blocking(..., direct=True)`` in :mod:`.bridge`: one round trip and nothing else,
such as a store ``get``, an ``acquire`` that finds the lock free, a ``release``) runs instead,
on a backend that serves lanes (single-server Redis), right here: :func:`drive` sends into the
very same coroutine the loop would run until it returns, with :data:`lockyard.lanes.CURRENT`
set, and the backend does its I/O on a blocking socket of this thread. Whatever needs the loop
(a contended ``acquire``'s wait, an observer's queue) is handed to it by :mod:`lockyard.lanes`
through :class:`ThreadLane`. So there is still one implementation of the semantics.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from lockyard import lanes
from lockyard._callers import CALLER
from lockyard.sync import threads

if TYPE_CHECKING:
    from lockyard.sync.portal import Portal

T = TypeVar("T")


class ThreadLane:
    """One handle's :class:`lockyard.lanes.Lane`: its loop, and the way back to it."""

    __slots__ = ("_portal",)

    def __init__(self, portal: Portal) -> None:
        self._portal = portal

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._portal.loop()

    def run_on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        # The rest of the call runs as a task on the loop, in a copy of the lane's context
        # (telemetry's records carry over) that is no longer in the lane; interruptible as
        # any blocking call.
        context = contextvars.copy_context()
        context.run(lanes.CURRENT.set, None)
        try:
            call = self._portal.start(_given, coroutine, context=context)
        except BaseException:  # the handle closed meanwhile: the coroutine will never run
            coroutine.close()
            raise
        result: T = call.wait(threads.current())
        return result


def _given(coroutine: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    return coroutine


def _enter(lane: ThreadLane, caller: object) -> None:
    lanes.CURRENT.set(lane)
    CALLER.set(caller)


def drive(lane: ThreadLane, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end in the calling thread, in ``lane``; its result or error.

    In a copy of the thread's context, as a task would run: what the call sets stays there,
    and the caller's own context (an OpenTelemetry span) is the call's parent.
    """
    context = contextvars.copy_context()
    context.run(_enter, lane, threads.current())
    try:
        context.run(coroutine.send, None)
    except StopIteration as done:
        result: T = done.value
        return result
    # It waited for the event loop, which a lane does not have: a core path that does must
    # go through lockyard.lanes.on_loop. Never reached by the operations marked direct.
    coroutine.close()
    raise RuntimeError("a lockyard.sync call driven in its calling thread waited for a loop")
