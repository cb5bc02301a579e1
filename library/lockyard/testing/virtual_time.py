"""Virtual time for asyncio tests: sleeps and timeouts take no real time.

A :class:`VirtualTimeEventLoop` keeps its own clock. Whenever the loop would block waiting for
its next timer and no I/O is ready, the clock jumps to that timer instead of sleeping, so a test
of a 30 s lease runs in microseconds, and in the same order of events as with real time. Real
I/O (sockets, threads calling back into the loop) still works: the loop polls it without
blocking before it jumps, and blocks for real only when it has no timer at all.

:class:`LoopClock` is the :class:`lockyard.clock.Clock` that reads the running loop's time, so a
backend given it (the memory backend) judges TTLs on the same virtual clock. On an ordinary
loop it reads the same monotonic clock as ``time.monotonic()``.

Use it from pytest-asyncio with the ``pytest_asyncio_loop_factories`` hook in a ``conftest.py``::

    def pytest_asyncio_loop_factories(config, item):
        return {"virtual-time": VirtualTimeEventLoop}
"""

from __future__ import annotations

import asyncio
import selectors
import time

_LATENESS_S = 1e-6


class _VirtualNow:
    """The shared reading of one loop's virtual clock (seconds, starts at the real one)."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = time.monotonic()


class _JumpingSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; when nothing is ready, jumps to the next timer."""

    def __init__(self, clock: _VirtualNow) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # No timer at all: only real I/O or another thread can wake the loop.
            return list(super().select(None))
        events = list(super().select(0))
        if not events and timeout > 0:
            # A microsecond late, as real timers always are: ``start + d - start`` can round
            # below ``d`` in floating point, and code waiting for a deadline must see it passed.
            self._clock.now += timeout + _LATENESS_S
        return events


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and advances to each timer when idle."""

    def __init__(self) -> None:
        self._virtual = _VirtualNow()
        super().__init__(selector=_JumpingSelector(self._virtual))

    def time(self) -> float:
        return self._virtual.now


class LoopClock:
    """A :class:`lockyard.clock.Clock` that reads the running event loop's time."""

    def __init__(self) -> None:
        # Wall time is shown to people only (renewal timestamps): anchor it once.
        self._epoch_offset = time.time() - time.monotonic()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return self._epoch_offset + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def loop_time() -> float:
    """The running loop's time: what conformance tests measure elapsed time with."""
    return asyncio.get_running_loop().time()


__all__ = ["LoopClock", "VirtualTimeEventLoop", "loop_time"]
