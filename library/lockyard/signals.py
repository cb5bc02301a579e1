"""Release signals: how a waiting ``acquire`` learns that its lock may be free.

A backend announces a release as the payload ``"<name>\\n<next owner>"`` (:func:`release_signal`)
wherever it can: an in-process call (memory), Redis pub/sub, PostgreSQL NOTIFY. Everything on
the receiving side that does not depend on the backend lives here, once:

- :class:`ReleaseWaiters`: per-name, per-owner events; a payload wakes only the owner it names.
- :class:`ReleaseSignals`: the waiters of one backend and the watch each waiting ``acquire``
  holds. Fed in-process (``wake``, ``deliver``), so a signal is never lost: always live.
- :class:`ReconnectingListener`: one background task keeping one server connection listening,
  re-made with capped, jittered backoff whenever it is lost. A backend supplies ``listen``
  (connect, subscribe, call ``listening``, then deliver until the connection drops).
- :class:`ReleaseListener`: release signals fed by such a listener. Whenever the connection comes
  up or goes down it wakes every waiter (a release may have been missed, or will not be
  announced); while it is down, waiters fall back to :mod:`lockyard.locks`'s capped polling.

``DistributedLock`` takes a ``ReleaseSignals`` and needs nothing else; without one its waiters
only poll (:class:`SleepWatch`). This module imports no backend.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from lockyard._tasks import raise_if_cancelled, stop_task
from lockyard.clock import Clock

log = logging.getLogger("lockyard.signals")

#: Reconnect backoff of a listener: the first pause, and the cap it doubles up to.
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0


class ReleaseWatch(Protocol):
    """Wakes a waiter when the watched lock may have been released."""

    @property
    def live(self) -> bool:
        """Whether a release signal would reach this watch now (a subscription is up).

        Only read for queued attempts (``AcquireAttempt.queued``): a queued waiter with a live
        watch is told when its turn comes, so it polls only to renew its waiter lease.
        """
        ...

    async def wait(self, timeout: float) -> None:
        """Return on a release signal or after ``timeout`` seconds, whichever is first."""
        ...


class SleepWatch:
    """The fallback watch: no signal, only the (already jittered) pause."""

    live = False

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def wait(self, timeout: float) -> None:
        await self._clock.sleep(timeout)


def release_signal(name: str, next_owner: str | None) -> str:
    """The payload a release publishes: the name, a newline, the queue's head owner or ``""``.

    Backends build the same text on the server (Lua, SQL); see :func:`parse_release_signal`.
    """
    return f"{name}\n{next_owner or ''}"


def parse_release_signal(payload: str) -> tuple[str, str | None]:
    """``(name, next owner or None)`` from a release payload.

    Owner tokens never contain a newline, so the split is at the last one (names may contain
    newlines). A payload without one (an older Lockyard) is a bare name: wake all its waiters.
    """
    name, newline, owner = payload.rpartition("\n")
    if not newline:
        return payload, None
    return name, owner or None


class ReleaseWaiters:
    """Per-name, per-owner events that release signals set.

    Each waiting ``acquire`` registers one event under its lock name and owner token. A release
    message that names the next owner wakes only that waiter (it is first in the queue; the
    others would only find it ahead of them); one without an owner wakes every waiter of the
    name, and a reconnect wakes all (messages may have been lost meanwhile). Waiters registered
    without an owner are woken by every message for their name.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, dict[asyncio.Event, str | None]] = {}
        self._by_owner: dict[tuple[str, str], asyncio.Event] = {}
        self._anonymous: dict[str, set[asyncio.Event]] = {}

    def watch(self, name: str, owner: str | None = None) -> asyncio.Event:
        event = asyncio.Event()
        self._by_name.setdefault(name, {})[event] = owner
        if owner is None:
            self._anonymous.setdefault(name, set()).add(event)
        else:
            self._by_owner[name, owner] = event
        return event

    def unwatch(self, name: str, event: asyncio.Event) -> None:
        events = self._by_name.get(name)
        if events is None or event not in events:
            return
        owner = events.pop(event)
        if not events:
            del self._by_name[name]
        if owner is not None:
            if self._by_owner.get((name, owner)) is event:
                del self._by_owner[name, owner]
            return
        anonymous = self._anonymous[name]
        anonymous.discard(event)
        if not anonymous:
            del self._anonymous[name]

    def wake(self, name: str, owner: str | None = None) -> None:
        """Wake ``owner``'s waiter of ``name`` (if it waits in this process), or all of them."""
        if owner is None:
            for event in self._by_name.get(name, ()):
                event.set()
            return
        mine = self._by_owner.get((name, owner))
        if mine is not None:
            mine.set()
        for event in self._anonymous.get(name, ()):
            event.set()

    def wake_signal(self, payload: str) -> None:
        """Wake the waiters a release payload (:func:`release_signal`) names."""
        self.wake(*parse_release_signal(payload))

    def wake_all(self) -> None:
        for events in self._by_name.values():
            for event in events:
                event.set()


class _EventWatch:
    """One waiter's watch: its event, and whether the signals can reach it now."""

    __slots__ = ("_event", "_signals")

    def __init__(self, event: asyncio.Event, signals: ReleaseSignals) -> None:
        self._event = event
        self._signals = signals

    @property
    def live(self) -> bool:
        return self._signals.live

    async def wait(self, timeout: float) -> None:
        event = self._event
        if not event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        event.clear()


class ReleaseSignals:
    """The waiters of one backend, woken by the releases it signals in-process.

    Taps (:meth:`tap`) see every signal too, whoever it names: lock observers
    (:mod:`lockyard.observe`) re-read a lock when its release is signalled.
    """

    def __init__(self) -> None:
        self._waiters = ReleaseWaiters()
        self._taps: list[Callable[[str | None], None]] = []

    @property
    def live(self) -> bool:
        """Whether a release would reach a waiter now; in-process signals always do."""
        return True

    def _before_watch(self) -> None:
        """Called as a waiter starts watching (a listener starts listening here)."""

    @contextlib.asynccontextmanager
    async def watch_releases(
        self, name: str, owner: str | None = None
    ) -> AsyncIterator[ReleaseWatch]:
        """A waiter's watch on ``name`` (``owner``: its token), for ``DistributedLock``."""
        self._before_watch()
        event = self._waiters.watch(name, owner)
        try:
            yield _EventWatch(event, self)
        finally:
            self._waiters.unwatch(name, event)

    def tap(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(name)`` on every signal (``None``: any lock may have changed, as on a
        reconnect) until the returned function is called. Starts a listener, like a watch.
        The callback must return at once."""
        self._before_watch()
        self._taps.append(callback)

        def untap() -> None:
            with contextlib.suppress(ValueError):
                self._taps.remove(callback)

        return untap

    def _tapped(self, name: str | None) -> None:
        for callback in self._taps:
            callback(name)

    def wake(self, name: str, owner: str | None = None) -> None:
        """Wake ``owner``'s waiter of ``name`` if it waits in this process (or all of them)."""
        self._waiters.wake(name, owner)
        self._tapped(name)

    def deliver(self, payload: str) -> None:
        """A release payload arrived (:func:`release_signal`): wake the waiters it names."""
        name, owner = parse_release_signal(payload)
        self._waiters.wake(name, owner)
        self._tapped(name)

    def wake_all(self) -> None:
        """Wake every waiter: each re-attempts at once."""
        self._waiters.wake_all()
        self._tapped(None)


class ReconnectingListener(abc.ABC):
    """One background task that keeps one server connection listening.

    ``listen`` (the backend's) connects, subscribes, calls :meth:`listening` once the
    subscription is confirmed, and then handles messages until the connection is lost, when it
    raises (or returns). The task then waits (capped exponential backoff with jitter, reset by
    every successful ``listening``) and calls ``listen`` again, until :meth:`close`.
    """

    def __init__(
        self, task_name: str, *, retry_min_s: float = RETRY_MIN_S, retry_max_s: float = RETRY_MAX_S
    ) -> None:
        self._task_name = task_name
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._retry_s = retry_min_s
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Set while a connection listens.
        self.connected = asyncio.Event()
        #: How many times a connection started listening (for tests and diagnostics).
        self.connections = 0

    @abc.abstractmethod
    async def listen(self) -> None:
        """Connect, subscribe, call :meth:`listening`; handle messages until the connection is
        lost. Close what it opened before returning or raising."""

    def start(self) -> None:
        """Start listening in the background, unless already started or closed."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._listen_forever(), name=self._task_name)

    def listening(self) -> None:
        """Called by ``listen``: the subscription is up, messages from now on arrive."""
        self.connections += 1
        self._retry_s = self._retry_min_s
        self.connected.set()

    def lost(self) -> None:
        """Called by the task when a listening connection is gone (a hook for subclasses)."""
        return

    async def restart(self) -> None:
        """Drop the connection and listen anew at once (the server moved), if started."""
        task, self._task = self._task, None
        if task is None:
            return
        await stop_task(task)
        self._retry_s = self._retry_min_s
        self.start()

    async def close(self) -> None:
        """Stop listening for good."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self.listen()
            except Exception as exc:  # any failure: note it, wait, listen again
                log.debug("lockyard: %s: connection lost or refused: %r", self._task_name, exc)
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    self.lost()
            raise_if_cancelled()
            delay = self._retry_s
            await asyncio.sleep(random.uniform(delay / 2, delay))
            self._retry_s = min(delay * 2, self._retry_max_s)


class ReleaseListener(ReconnectingListener, ReleaseSignals):
    """Release signals fed by one listening server connection (pub/sub, LISTEN/NOTIFY).

    Started by the first waiter. Every time the connection comes up or goes down, every waiter
    wakes and re-attempts: a release may have been announced while nobody listened, and while
    nobody listens none will arrive (the waiters poll meanwhile, and see an outage at once).
    """

    def __init__(
        self, task_name: str, *, retry_min_s: float = RETRY_MIN_S, retry_max_s: float = RETRY_MAX_S
    ) -> None:
        ReconnectingListener.__init__(
            self, task_name, retry_min_s=retry_min_s, retry_max_s=retry_max_s
        )
        ReleaseSignals.__init__(self)

    @property
    def live(self) -> bool:
        return self.connected.is_set()

    def _before_watch(self) -> None:
        self.start()

    def listening(self) -> None:
        super().listening()
        self.wake_all()

    def lost(self) -> None:
        self.wake_all()

    async def restart(self) -> None:
        await super().restart()
        self.wake_all()

    async def close(self) -> None:
        await super().close()
        self.wake_all()
