"""The direct lane: the async core's coroutine run in a calling thread, without an event loop.

:mod:`lockyard.sync` runs each blocking call on its handle's event loop thread, so there is one
implementation of the semantics. The hop there and back costs two thread wake-ups, about as
much as the Redis round trip itself (a sequential lock cycle went at 0.5x redis-py's blocking
``Lock``). For the calls that are one round trip and nothing else (a store ``get``, an
uncontended ``acquire``, a ``release``) the facade instead drives the very same coroutine in the
calling thread (``coroutine.send(None)`` until it returns), and a backend that supports it does
its I/O there on a blocking socket of that thread (Redis: :mod:`.backends.redis.blocking`).

Such a coroutine must never suspend: there is no loop to resume it. The few places of the core
that need the loop go through this module, which is a no-op off the lane:

- :func:`on_loop`: the rest of a call that must wait (a contended ``acquire``'s queue and
  release watch) runs on the handle's loop while the calling thread blocks for its result;
- :func:`soon`: a callback that touches loop objects (an observer's queue, a waiter's wake-up)
  is scheduled on the loop;
- :func:`loop`: the loop this call belongs to, for objects that must report to it later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Lane(Protocol):
    """What the core needs of the thread a coroutine is driven in (``lockyard.sync``'s)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the handle the call belongs to."""
        ...

    def run_on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block the calling thread for its result."""
        ...


#: The lane the current call is driven in; ``None`` (the default) on an event loop.
CURRENT: ContextVar[Lane | None] = ContextVar("lockyard_lane", default=None)


def active() -> bool:
    """Whether the current call is driven in a calling thread (no event loop runs here)."""
    return CURRENT.get() is not None


async def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``await coroutine``: here on a loop; on the handle's loop from a lane."""
    lane = CURRENT.get()
    if lane is None:
        return await coroutine
    return lane.run_on_loop(coroutine)


def soon(callback: Callable[..., object], *args: Any) -> None:
    """``callback(*args)``: now on a loop; from a lane, soon on the handle's loop (in order)."""
    lane = CURRENT.get()
    if lane is None:
        callback(*args)
    else:
        lane.loop.call_soon_threadsafe(callback, *args)


def loop() -> asyncio.AbstractEventLoop:
    """The loop the current call belongs to: the running one, or the lane's handle's."""
    lane = CURRENT.get()
    return asyncio.get_running_loop() if lane is None else lane.loop
