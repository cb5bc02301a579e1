"""Lock observation: ``ly.locks.observe(name)`` and ``observe_prefix(prefix)`` yield every change.

What an observer learns from, per ``DistributedLock`` (one :class:`_Feed` shared by its observers):

- this connection's own guards (acquired, extended, released, broken): exact, at once;
- the backend's release signals (:mod:`lockyard.signals`, where it has them): the lock may have
  been released by another client, so it is read again;
- the holder's lease end: read again then, to see it expired (or was renewed);
- a poll every ``poll_interval``: other clients' acquisitions and renewals send no signal.

Each observer keeps the last state it reported and turns what it learns into events in
fencing-token order, never the same change twice: a read older than what it already knows is
ignored. Changes that come and go between two reads of another client's lock may be folded
into one (the events still say which term ended and which began); the latest state is always
reported. The contract is in docs/contract.md, section 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Literal, Self, TypeVar

from lockyard.durations import Duration, timeout_to_seconds
from lockyard.errors import StateError
from lockyard.locks import DistributedLock, LockGuard, LockInfo, check_lock_name

log = logging.getLogger("lockyard.observe")

LockEventKind = Literal["acquired", "extended", "released", "expired", "broken"]
#: The part of an owner token events show (as Leases do): the token itself is the holder's.
OWNER_PREFIX_LENGTH = 8
#: Default pause between two reads when nothing signals a change (backends without release
#: signals poll at least this often as well: see ``DistributedLock.poll_cap_s``).
DEFAULT_POLL_INTERVAL_S = 0.5
#: After a change (or a release signal), the next read comes this soon, doubling up to the poll
#: interval: a release is usually followed by the next holder's acquisition within milliseconds.
FOLLOW_UP_S = 0.005
#: Slack when comparing two estimates of one lease's end (rounding to whole milliseconds).
DEADLINE_SLACK_S = 0.002
#: How early a guard's own ``lease_deadline`` may be against the backend's lease, at least: the
#: guard's call took up to the time from its start to the event (a call that waited 300 ms for
#: its turn under load began its lease that much after ``lease_deadline`` assumes), and a later
#: read within that is not an extension.
GUARD_DEADLINE_ERROR_S = 0.05

E = TypeVar("E", covariant=True)


@dataclass(frozen=True, slots=True)
class LockEvent:
    """One change of a lock, as an observer learned it.

    ``expires_in_ms``: the lease left when learned (0 for the end of a lease). ``at``: wall time
    (seconds since the epoch) when this observer learned it.
    """

    kind: LockEventKind
    name: str
    owner_prefix: str
    fencing_token: int
    expires_in_ms: int
    at: float


@dataclass(slots=True)
class _Held:
    """What an observer believes of one live lock."""

    info: LockInfo
    #: Estimated end of the lease (lock clock, monotonic seconds); may be early by ``error``.
    deadline: float
    error: float
    #: Set when this connection broke the lock: its end is reported as ``broken``.
    broken: bool = False


#: A change an observer found: (kind, the lock's info as last known).
Change = tuple[LockEventKind, LockInfo]


class _Tracker:
    """The states of the locks one observer watches; turns what it learns into changes."""

    def __init__(self) -> None:
        self.held: dict[str, _Held] = {}
        #: Breaks of this connection under way, by lock: a read that finds such a lock free
        #: may have raced the break, whose result tells a break from a release.
        self.breaking: dict[str, int] = {}

    def _end(self, name: str, now: float, kind: LockEventKind | None = None) -> Change:
        state = self.held.pop(name)
        if kind is None:
            if state.broken:
                kind = "broken"
            elif now >= state.deadline - DEADLINE_SLACK_S:
                kind = "expired"
            else:
                kind = "released"
        return kind, state.info

    def seen(self, name: str, info: LockInfo | None, started: float, error: float) -> list[Change]:
        """A read of ``name`` that began at ``started`` (its answer may be ``error`` s old)."""
        state = self.held.get(name)
        if info is None:
            if state is None or self.breaking.get(name):
                return []  # not held, or ended by this connection's break: its result decides
            # Found free at some moment of the read, as late as its answer: a read that began
            # before the lease end and was answered after it (a slow round trip) saw it expire.
            return [self._end(name, started + error)]
        deadline = started + info.expires_in_ms / 1000
        if state is not None:
            if info.fencing_token < state.info.fencing_token:
                return []  # an older term than one already reported
            if info.fencing_token == state.info.fencing_token:
                moved = deadline > state.deadline + max(state.error, error) + DEADLINE_SLACK_S
                if deadline > state.deadline:
                    state.deadline, state.error = deadline, error
                    state.info = info
                return [("extended", info)] if moved else []
        changes = [] if state is None else [self._end(name, started)]
        self.held[name] = _Held(info, deadline, error)
        return [*changes, ("acquired", info)]

    def guard_event(self, kind: str, guard: LockGuard, now: float) -> list[Change]:
        """This connection's own guard was acquired, extended or released (exact)."""
        name = guard.name
        info = LockInfo(
            name,
            guard.owner,
            guard.fencing_token,
            max(0, round((guard.lease_deadline - now) * 1000)),
        )
        state = self.held.get(name)
        if state is not None and guard.fencing_token < state.info.fencing_token:
            return []
        call_started = guard.lease_deadline - guard.lease_ms / 1000
        error = max(GUARD_DEADLINE_ERROR_S, now - call_started)
        if kind == "released":
            if state is None:
                return []  # its end was reported already (or it was never seen)
            changes = self.seen(name, info, now, error)  # a missed term first
            # A term this connection broke ended with the break: its holder's release, told
            # before a read could see the lock free, found nothing to release.
            broken = self.held[name].broken
            return [*changes, self._end(name, now, "broken" if broken else "released")]
        changes = self.seen(name, info, now, error)
        if kind == "acquired" and changes and changes[-1][0] == "extended":
            return []
        return changes

    def break_ended(self, name: str, broken: bool) -> None:
        """This connection's break of ``name`` is over (``broken``: it ended a live lease)."""
        left = self.breaking.get(name, 0) - 1
        if left > 0:
            self.breaking[name] = left
        else:
            self.breaking.pop(name, None)
        state = self.held.get(name)
        if broken and state is not None:
            state.broken = True

    def next_deadline(self) -> float | None:
        return min((state.deadline for state in self.held.values()), default=None)


class _Feed:
    """Everything one ``DistributedLock`` tells its observers; one per lock manager."""

    def __init__(self, locks: DistributedLock) -> None:
        self.locks = locks
        # Weak: an observation its consumer dropped without ``aclose()`` must not live on here.
        self.observers: weakref.WeakSet[Observation[object]] = weakref.WeakSet()
        self._untap: Callable[[], None] | None = None
        locks.add_observer(self)

    def join(self, observer: Observation[object]) -> None:
        self.observers.add(observer)
        signals = self.locks.release_signals
        if self._untap is None and signals is not None:
            self._untap = signals.tap(self._signalled)

    def leave(self, observer: Observation[object]) -> None:
        self.observers.discard(observer)
        if not self.observers and self._untap is not None:
            self._untap()
            self._untap = None

    # -- LockObserver ----------------------------------------------------------------------
    def lock_acquired(self, guard: LockGuard) -> None:
        self._tell(guard.name, ("acquired", guard))

    def lock_extended(self, guard: LockGuard) -> None:
        self._tell(guard.name, ("extended", guard))

    def lock_released(self, guard: LockGuard) -> None:
        self._tell(guard.name, ("released", guard))

    def lock_breaking(self, name: str) -> None:
        # At once, not queued: a read answered from now on may have seen the break.
        for observer in list(self.observers):
            if observer.watches(name):
                observer.breaking(name)

    def lock_broken(self, name: str) -> None:
        self._tell(name, ("broken", name))

    def lock_not_broken(self, name: str) -> None:
        self._tell(name, ("not broken", name))

    def _signalled(self, name: str | None) -> None:
        for observer in list(self.observers):
            observer.signalled(name)

    def _tell(self, name: str, event: tuple[str, LockGuard | str]) -> None:
        for observer in list(self.observers):
            if observer.watches(name):
                observer.told(event)


#: The attribute that keeps a lock manager's feed on the manager itself (so both go together).
_FEED_ATTRIBUTE = "_lockyard_observation_feed"


def _feed_of(locks: DistributedLock) -> _Feed:
    feed = getattr(locks, _FEED_ATTRIBUTE, None)
    if not isinstance(feed, _Feed):
        feed = _Feed(locks)
        setattr(locks, _FEED_ATTRIBUTE, feed)
    return feed


class Observation(Generic[E]):
    """Changes of one lock (or of every lock under a prefix), as an async iterator of ``E``.

    ``async for event in ...:`` or ``async with ... as events:``; stop with ``await aclose()``
    (the ``async with`` form does). The first events are the current holders, as acquisitions.
    Backend errors while reading are retried every poll interval: an outage delays events, it
    does not end the iteration. Subclasses say what an event is (:meth:`_event`).
    """

    def __init__(
        self,
        locks: DistributedLock,
        *,
        name: str | None = None,
        prefix: str | None = None,
        poll_interval: Duration | None = None,
    ) -> None:
        self._locks = locks
        self._name = name
        self._prefix = prefix
        poll = DEFAULT_POLL_INTERVAL_S if poll_interval is None else poll_interval
        self._poll_s = max(timeout_to_seconds(poll), 0.001)
        self._tracker = _Tracker()
        self._ready: deque[tuple[LockEventKind, LockInfo, float]] = deque()
        self._told: deque[tuple[str, LockGuard | str]] = deque()
        #: Names a signal asked to read again; ``None`` in it: read everything.
        self._to_read: set[str | None] = {None}
        self._poke = asyncio.Event()
        self._follow_up_s: float | None = None
        self._feed: _Feed | None = None
        self._closed = False

    # -- iteration -------------------------------------------------------------------------
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        if self._feed is None and not self._closed:
            self._feed = _feed_of(self._locks)
            self._feed.join(self)
        while True:
            while not self._ready:
                if self._closed:
                    raise StopAsyncIteration
                await self._learn()
            event = self._event(*self._ready.popleft())
            if event is not None:
                return event

    def _event(self, kind: LockEventKind, info: LockInfo, at: float) -> E | None:
        """The event to yield for a change (``None``: not one this observer yields)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        self._closed = True
        self._poke.set()
        if self._feed is not None:
            self._feed.leave(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- what the feed calls ---------------------------------------------------------------
    def watches(self, name: str) -> bool:
        if self._name is not None:
            return name == self._name
        assert self._prefix is not None
        return name.startswith(self._prefix)

    def breaking(self, name: str) -> None:
        tracker = self._tracker
        tracker.breaking[name] = tracker.breaking.get(name, 0) + 1

    def told(self, event: tuple[str, LockGuard | str]) -> None:
        self._told.append(event)
        self._poke.set()

    def signalled(self, name: str | None) -> None:
        if name is None or self.watches(name):
            self._to_read.add(name if self._prefix is not None else None)
            self._poke.set()

    # -- learning --------------------------------------------------------------------------
    async def _learn(self) -> None:
        """One step: apply what this connection told, else read what needs reading, else wait."""
        clock = self._locks.clock
        if self._told:
            kind, subject = self._told.popleft()
            now = clock.monotonic()
            if isinstance(subject, str):
                self._tracker.break_ended(subject, broken=kind == "broken")
                self._to_read.add(subject if self._prefix is not None else None)
            else:
                self._emit(self._tracker.guard_event(kind, subject, now))
            return
        if self._to_read:
            to_read, self._to_read = self._to_read, set()
            try:
                changed = await self._read(to_read)
            except StateError as exc:
                log.debug("lockyard: observing locks: read failed, retrying: %r", exc)
                await self._wait(self._poll_s)
                self._to_read |= to_read
                return
            if changed:
                self._follow_up_s = FOLLOW_UP_S
            return
        await self._wait(self._next_pause())

    def _next_pause(self) -> float:
        pause = self._poll_s
        if self._follow_up_s is not None:
            pause = self._follow_up_s
            doubled = self._follow_up_s * 2
            self._follow_up_s = doubled if doubled < self._poll_s else None
        deadline = self._tracker.next_deadline()
        if deadline is not None:
            # Read again just after the lease would end, to see it expire (or renewed).
            pause = min(pause, max(deadline - self._locks.clock.monotonic(), 0.0) + 0.001)
        return pause

    async def _wait(self, pause: float) -> None:
        if self._told or self._to_read or self._closed:
            return
        self._poke.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await self._poke.wait()
        if not self._poke.is_set():  # the pause ran out: poll
            self._to_read.add(None)

    async def _read(self, names: set[str | None]) -> bool:
        """Read the holders of ``names`` (``None``: all watched); whether anything changed."""
        locks, clock = self._locks, self._locks.clock
        before = len(self._ready)
        if self._name is not None or None not in names:
            for name in [self._name] if self._name is not None else sorted(n for n in names if n):
                started = clock.monotonic()
                info = await locks.holder(name)
                self._emit(self._tracker.seen(name, info, started, clock.monotonic() - started))
            return len(self._ready) > before
        assert self._prefix is not None
        started = clock.monotonic()
        found = {
            info.name: info
            for info in await locks.list_held()
            if info.name.startswith(self._prefix)
        }
        error = clock.monotonic() - started
        for name in sorted(set(found) | set(self._tracker.held)):
            self._emit(self._tracker.seen(name, found.get(name), started, error))
        return len(self._ready) > before

    def _emit(self, changes: list[Change]) -> None:
        at = self._locks.clock.wall()
        self._ready.extend((kind, info, at) for kind, info in changes)


class LockObservation(Observation[LockEvent]):
    """``ly.locks.observe(name)`` and ``observe_prefix(prefix)``: :class:`LockEvent` items."""

    def _event(self, kind: LockEventKind, info: LockInfo, at: float) -> LockEvent:
        left = info.expires_in_ms if kind in ("acquired", "extended") else 0
        owner = info.owner[:OWNER_PREFIX_LENGTH]
        return LockEvent(kind, info.name, owner, info.fencing_token, left, at)


def observe(
    locks: DistributedLock, name: str, *, poll_interval: Duration | None = None
) -> LockObservation:
    """The changes of lock ``name`` (``ly.locks.observe``)."""
    return LockObservation(locks, name=check_lock_name(name), poll_interval=poll_interval)


def observe_prefix(
    locks: DistributedLock, prefix: str, *, poll_interval: Duration | None = None
) -> LockObservation:
    """The changes of every lock whose name starts with ``prefix`` (``""``: every lock)."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    return LockObservation(locks, prefix=prefix, poll_interval=poll_interval)
