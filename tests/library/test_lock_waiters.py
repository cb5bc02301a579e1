"""Release signals (lockyard.signals): a payload wakes only the owner it names, and a listener
wakes every waiter whenever its connection comes up or goes down, reconnecting with backoff."""

from __future__ import annotations

import asyncio

import pytest

import lockyard
from lockyard.signals import ReleaseListener, ReleaseWaiters, parse_release_signal, release_signal


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


class QueueListener(ReleaseListener):
    """A listener whose "connection" is an in-process queue: ``None`` drops it, and the first
    ``refusals`` attempts to connect fail. (The real ones, Redis pub/sub and PostgreSQL LISTEN,
    are tested against real servers in tests/redis and tests/postgres.)"""

    def __init__(self, refusals: int = 0) -> None:
        super().__init__("test-listener", retry_min_s=0.001, retry_max_s=0.004)
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.refusals = refusals
        self.attempts = 0

    async def listen(self) -> None:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise ConnectionError("refused")
        self.listening()
        while (payload := await self.inbox.get()) is not None:
            self.deliver(payload)


async def test_a_listener_wakes_every_waiter_when_it_connects_and_when_it_drops() -> None:
    listener = QueueListener(refusals=2)
    try:
        async with (
            listener.watch_releases("job", "a") as first,
            listener.watch_releases("job", "b") as second,
        ):
            assert not first.live  # the first watch only starts the listener
            await asyncio.wait_for(listener.connected.wait(), 1)
            assert listener.attempts == 3  # two refusals, retried with backoff
            assert first.live
            # Connecting woke both: a release may have been missed meanwhile.
            await asyncio.wait_for(asyncio.gather(first.wait(10), second.wait(10)), 1)
            listener.inbox.put_nowait(release_signal("job", "b"))
            await asyncio.wait_for(second.wait(10), 1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await first.wait(0.05)  # only b's turn came: a sleeps its whole pause
            assert loop.time() - started >= 0.049  # (timers may fire a clock tick early)
            listener.inbox.put_nowait(None)  # the connection drops
            await asyncio.wait_for(first.wait(10), 1)  # both woken: no signal can come now
            await asyncio.wait_for(second.wait(10), 1)
            await asyncio.wait_for(listener.connected.wait(), 1)  # and it listens again
            assert listener.connections == 2
            assert first.live
    finally:
        await listener.close()
    assert not listener.connected.is_set()
    assert listener._task is None


async def test_a_closed_listener_stays_closed() -> None:
    listener = QueueListener()
    async with listener.watch_releases("job") as watch:
        await asyncio.wait_for(listener.connected.wait(), 1)
        await listener.close()
        assert not watch.live
    async with listener.watch_releases("job") as watch:  # a later waiter only polls
        assert not watch.live
        assert listener._task is None
