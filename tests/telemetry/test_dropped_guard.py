"""A guard collected unreleased ends its record as ``dropped`` without ever blocking the thread
the collector happened to interrupt.

The collector runs a dropped guard's finalizer wherever that thread is, possibly inside a lock
the record's end takes (``guards._LOCK``, an SDK instrument's lock; neither is reentrant).
Ending the record right there blocked the thread on itself forever: an event loop frozen with
its workers, Ctrl-C ignored. Here the collection is made to run inside ``guards._LOCK``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from telemetry_sdk import Sdk

import lockyard
from lockyard.telemetry import guards


@pytest.fixture(autouse=True)
def collector_off() -> Iterator[None]:
    """Collections only where the test makes them."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
async def ly(sdk: Sdk) -> AsyncIterator[lockyard.Connection]:
    """A memory store, opened once the SDK records."""
    async with lockyard.connect("memory://?prefix=dropped") as connection:
        yield connection


def ends(sdk: Sdk) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in sdk.points("lockyard.lock.hold.duration"):
        how = str(point.attributes["lockyard.lock.end"])
        counts[how] = counts.get(how, 0) + point.count
    return counts


def held(sdk: Sdk) -> int:
    return int(sum(point.value for point in sdk.points("lockyard.lock.held")))


async def test_a_guard_collected_inside_a_telemetry_lock_ends_as_dropped_without_blocking(
    sdk: Sdk, ly: lockyard.Connection
) -> None:
    guard = await ly.locks.acquire("dropped", 30, timeout=1)
    cycle: list[object] = [guard]
    cycle.append(cycle)  # only the collector frees it
    del guard, cycle
    assert held(sdk) == 1

    collected = threading.Event()

    def collect_inside_the_lock() -> None:
        with guards._LOCK:
            gc.collect()
        collected.set()

    # A thread of its own, so a deadlock fails the test instead of hanging the suite.
    threading.Thread(target=collect_inside_the_lock, daemon=True).start()
    assert await asyncio.to_thread(collected.wait, 30), "the collecting thread blocked"

    for _ in range(100):  # the loop ends the record in its next iterations
        if ends(sdk).get("dropped"):
            break
        await asyncio.sleep(0.01)
    assert ends(sdk) == {"dropped": 1}
    assert held(sdk) == 0
    await ly.locks.break_lock("dropped")


async def test_a_guard_dropped_without_a_loop_is_ended_by_the_next_acquisition(
    sdk: Sdk, ly: lockyard.Connection
) -> None:
    guard = await ly.locks.acquire("first", 30, timeout=1)
    record = guards.record_of(guard)
    assert record is not None
    # As if its loop had closed before the collection: only the queue is left to end it.
    guards._dropped(record, None)
    assert ends(sdk) == {}
    second = await ly.locks.acquire("second", 30, timeout=1)
    assert ends(sdk) == {"dropped": 1}
    await second.release()
    await guard.release()  # its record has ended: nothing more is counted
    assert ends(sdk) == {"dropped": 1, "released": 1}
    assert held(sdk) == 0
