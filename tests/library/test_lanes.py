"""lockyard.lanes and the sync facade's driver: off a lane the helpers are plain awaits and
calls; in a lane they hand work to the loop; a driven coroutine that waits is refused."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lockyard import lanes
from lockyard.sync.lane import drive
from lockyard.sync.portal import Portal


async def double(value: int) -> int:
    return 2 * value


async def test_off_a_lane_the_helpers_run_here() -> None:
    assert not lanes.active()
    assert await lanes.on_loop(double(21)) == 42
    seen: list[int] = []
    lanes.soon(seen.append, 1)
    assert seen == [1]  # at once, not scheduled
    assert lanes.loop() is asyncio.get_running_loop()


def test_in_a_lane_waiting_and_callbacks_go_to_the_loop() -> None:
    portal = Portal("lanes-test")
    lane = portal.lane
    try:

        async def body() -> tuple[int, list[int], int | None]:
            assert lanes.active()
            loop_thread = await lanes.on_loop(_thread_of_loop())
            seen: list[int] = []
            lanes.soon(lambda: seen.append(threading.get_ident()))
            assert lanes.loop() is portal.loop()
            return loop_thread, seen, threading.get_ident()

        loop_thread, seen, here = drive(lane, body())
        assert here == threading.get_ident()  # driven in this thread
        assert portal.thread is not None
        assert loop_thread == portal.thread.ident  # the wait ran on the loop
        portal.call(_yield)  # the callback was scheduled before this call: it has run
        assert seen == [portal.thread.ident]
    finally:
        portal.close()


async def _thread_of_loop() -> int:
    await asyncio.sleep(0)  # a real wait: only possible on the loop
    return threading.get_ident()


async def _yield() -> None:
    await asyncio.sleep(0)


def test_a_driven_coroutine_that_waits_for_a_loop_is_refused() -> None:
    portal = Portal("lanes-refuse")
    try:
        with pytest.raises(RuntimeError, match="waited for a loop"):
            drive(portal.lane, _yield())
    finally:
        portal.close()


def test_the_lane_is_not_left_set_in_the_calling_thread() -> None:
    portal = Portal("lanes-context")
    try:
        assert drive(portal.lane, double(2)) == 4
        assert not lanes.active()
    finally:
        portal.close()
