"""Release signals name the next owner: only its waiter wakes (lockyard.locks.ReleaseWaiters)."""

from __future__ import annotations

import asyncio

import pytest

import lockyard
from lockyard.locks import ReleaseWaiters, parse_release_signal, release_signal


def test_release_signals_round_trip_names_with_newlines() -> None:
    assert parse_release_signal(release_signal("job", "a1b2")) == ("job", "a1b2")
    assert parse_release_signal(release_signal("line\nbreak", "a1b2")) == ("line\nbreak", "a1b2")
    assert parse_release_signal(release_signal("job", None)) == ("job", None)
    assert parse_release_signal("job") == ("job", None)  # an older Lockyard: a bare name


def test_a_signal_naming_an_owner_wakes_only_its_waiter() -> None:
    waiters = ReleaseWaiters()
    first, second = waiters.watch("job", "a"), waiters.watch("job", "b")
    anonymous, elsewhere = waiters.watch("job"), waiters.watch("other", "c")
    waiters.wake_signal(release_signal("job", "b"))
    assert (first.is_set(), second.is_set(), anonymous.is_set()) == (False, True, True)
    assert not elsewhere.is_set()
    second.clear()
    anonymous.clear()
    waiters.wake_signal(release_signal("job", "not-here"))  # another process's waiter
    assert (first.is_set(), second.is_set(), anonymous.is_set()) == (False, False, True)
    waiters.wake_signal(release_signal("job", None))
    assert first.is_set()
    assert second.is_set()
    assert not elsewhere.is_set()
    waiters.wake_all()
    assert elsewhere.is_set()


def test_unwatch_forgets_every_trace() -> None:
    waiters = ReleaseWaiters()
    events = [waiters.watch("job", "a"), waiters.watch("job")]
    waiters.unwatch("job", events[0])
    waiters.unwatch("job", events[1])
    waiters.unwatch("job", events[1])  # twice is harmless
    assert waiters._by_name == {}
    assert waiters._by_owner == {}
    assert waiters._anonymous == {}


async def test_a_waiter_cancelled_twice_still_leaves_the_queue() -> None:
    async with lockyard.connect("memory://") as ly:
        holder = await ly.locks.acquire("job", 30, timeout=1)
        quitter = asyncio.create_task(ly.locks.acquire("job", 30, timeout=10))
        await asyncio.sleep(0.01)
        quitter.cancel()
        await asyncio.sleep(0)
        quitter.cancel()  # again, while it leaves the queue
        with pytest.raises(asyncio.CancelledError):
            await quitter
        await asyncio.sleep(0)  # the shielded leave finishes on its own
        patient = asyncio.create_task(ly.locks.acquire("job", 30, timeout=10))
        await asyncio.sleep(0.01)
        await holder.release()
        guard = await asyncio.wait_for(patient, 0.1)  # not held up by the quitter's entry
        await guard.release()
