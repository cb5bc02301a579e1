"""Distributed locks: ``DistributedLock`` hands out ``LockGuard`` leases with fencing tokens.

The acquisition loop, auto-renewal and loss detection live here once; a backend supplies five
owner-checked primitives (acquire, extend, release, is-held, break) and, optionally, release
signals that wake waiters (:mod:`lockyard.signals`: in-process, pub/sub, LISTEN/NOTIFY). Waiters
never busy poll: they sleep until a release signal, the holder's lease end, or a capped, jittered
backoff, whichever comes first; the backoff only matters when a signal is lost.

Fair hand-off. A backend that queues waiters (``Guarantees.fifo_waiters``) keeps, per lock name,
a FIFO queue of the callers that wait (``acquire`` with a timeout above 0). A waiting attempt
takes the lock only if it is free and no live waiter is queued ahead of it; otherwise it joins
the queue, or refreshes its entry, with a short *waiter lease* (``waiter_lease_s``). Each attempt
renews that lease and a queued waiter re-attempts well within it, so the entry of a waiter that
crashed stalls a hand-off for at most the waiter lease. A waiter that gives up (timeout,
cancellation, error) leaves the queue (``_leave_queue``, best effort). Release signals name the
head of the queue, so only that waiter wakes, instead of every waiter racing (and losing to)
the releaser, which would otherwise take the lock again at once. ``try_acquire`` and
``acquire(timeout=0)`` do not queue: they take a free lock whoever waits.

Observers (the Kubernetes Lease mirror) are told of acquisitions, renewals and releases through
plain synchronous callbacks that must only enqueue work: lock operations never wait for them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from lockyard import lanes
from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.durations import Duration, lock_ttl_to_ms, timeout_to_seconds
from lockyard.errors import LockExpiredError, LockTimeoutError
from lockyard.fenced_writes import Fence
from lockyard.held_lease import HeldLease

# Re-exported: they lived here before lockyard.holding and lockyard.waiting.
from lockyard.holding import LOSS_MARGIN_FRACTION as LOSS_MARGIN_FRACTION
from lockyard.holding import LOSS_MARGIN_MAX_S as LOSS_MARGIN_MAX_S
from lockyard.holding import LOSS_MARGIN_MIN_S as LOSS_MARGIN_MIN_S
from lockyard.holding import LeaseHold
from lockyard.holding import loss_margin_s as loss_margin_s

# Names under it belong to lockyard.elections: the lock API reads and breaks them but does not
# acquire them (check_acquirable_name), so no user lock can take an election's place.
from lockyard.identity import ELECTION_LOCK_PREFIX as ELECTION_LOCK_PREFIX
from lockyard.operations import OperationRunner
from lockyard.signals import ReleaseSignals, ReleaseWatch, SleepWatch

# Re-exported: they lived here before lockyard.signals, and callers import them from here.
from lockyard.signals import ReleaseWaiters as ReleaseWaiters
from lockyard.signals import parse_release_signal as parse_release_signal
from lockyard.signals import release_signal as release_signal
from lockyard.telemetry import hooks as telemetry
from lockyard.waiting import LEAVE_QUEUE_TIMEOUT_S as LEAVE_QUEUE_TIMEOUT_S
from lockyard.waiting import QueueExit, WaitPolicy, wait_for_turn

if TYPE_CHECKING:
    from lockyard.observe import LockObservation

log = logging.getLogger("lockyard.locks")

#: The longest lock name, in bytes of UTF-8.
MAX_LOCK_NAME_LENGTH = 512
#: The longest owner token, in bytes of UTF-8 (elections put the candidate's identity in it).
MAX_OWNER_LENGTH = 512
DEFAULT_HOLD_TIMEOUT_S = 30.0
#: How long a queued waiter's entry lives without a new attempt (see the module docstring).
DEFAULT_WAITER_LEASE_S = 2.0


@dataclass(frozen=True, slots=True)
class AcquireAttempt:
    """What one acquisition round trip found: a fencing token, or when to try again.

    ``retry_after_ms``: the holder's remaining lease (or, when the lock is free but another
    waiter is first in the queue, that waiter's remaining waiter lease). ``queued``: the caller
    is in the lock's FIFO queue, and a release will signal it by its owner token when it is
    first; it then need not poll often.
    """

    fencing_token: int | None
    retry_after_ms: int | None = None
    queued: bool = False

    @property
    def granted(self) -> bool:
        return self.fencing_token is not None


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A live lock as the backend sees it (for inspection, reaping and ``lockyard locks``)."""

    name: str
    owner: str
    fencing_token: int
    expires_in_ms: int


class LockObserver(Protocol):
    """Told of a guard's life; must return at once (queue work, never await the network)."""

    def lock_acquired(self, guard: LockGuard) -> None: ...

    def lock_extended(self, guard: LockGuard) -> None: ...

    def lock_released(self, guard: LockGuard) -> None: ...


def check_lock_name(name: object) -> str:
    """``name`` if it is a valid lock name: 1 to 512 bytes of UTF-8, without NUL.

    Bytes, not characters: DynamoDB keys and PostgreSQL index entries are limited in bytes.
    """
    if not isinstance(name, str):
        raise TypeError(f"lock name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("lock name must not be empty")
    if "\x00" in name:
        raise ValueError("lock name must not contain NUL ('\\x00'): PostgreSQL cannot store it")
    try:
        size = len(name) if name.isascii() else len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(
            "lock name must be valid Unicode text: it contains a lone surrogate, "
            "which has no UTF-8 form"
        ) from None
    if size > MAX_LOCK_NAME_LENGTH:
        raise ValueError(f"lock name is {size} bytes of UTF-8; the limit is {MAX_LOCK_NAME_LENGTH}")
    return name


def check_acquirable_name(name: object) -> str:
    """``name`` if the lock API may acquire it: a valid lock name outside the election names."""
    checked = check_lock_name(name)
    if checked.startswith(ELECTION_LOCK_PREFIX):
        raise ValueError(
            f"lock names starting with {ELECTION_LOCK_PREFIX!r} are reserved for "
            "ly.elections; campaign in the election instead"
        )
    return checked


def check_owner_token(owner: str) -> str:
    """``owner`` if it can be an owner token: 1 to 512 bytes of UTF-8, no NUL or newline.

    Release signals end with the owner after the last newline, so an owner has none.
    """
    if not owner or "\x00" in owner or "\n" in owner:
        raise ValueError("an owner token must be non-empty, without NUL or newline")
    if len(owner.encode("utf-8")) > MAX_OWNER_LENGTH:
        raise ValueError(f"an owner token is at most {MAX_OWNER_LENGTH} bytes of UTF-8")
    return owner


class LockGuard(HeldLease):
    """One acquisition of a lock. Holds its owner token; checks ownership on the backend."""

    __slots__ = ("_locks",)

    def __init__(
        self,
        locks: DistributedLock,
        name: str,
        owner: str,
        fencing_token: int,
        lease_ms: int,
        started: float,
    ) -> None:
        self._locks = locks
        super().__init__(locks.clock, name, owner, fencing_token, lease_ms, started)

    @telemetry.instrument_guard("extend")
    async def extend(self, ttl: Duration) -> None:
        """Set the remaining lease to ``ttl`` from now; ``LockExpiredError`` if no longer held."""
        ms = lock_ttl_to_ms(ttl)
        locks = self._locks
        started = locks.clock.monotonic()
        held = await locks._run("extend", locks._extend(self.name, self.owner, ms))
        if not held:
            self.lost.set()
            raise LockExpiredError(
                f"lock {self.name!r} (fencing token {self.fencing_token}) is no longer held by "
                "this guard: it expired, was released or was taken by another owner"
            )
        self._renewed(locks.clock, ms, started)
        locks._notify("lock_extended", self)

    @telemetry.instrument_guard("release")
    async def release(self) -> None:
        """Release the lock; ``LockExpiredError`` if this guard no longer held it."""
        locks = self._locks
        held = await locks._run("release", locks._release(self.name, self.owner))
        self._released = True
        if locks._observers:
            locks._notify("lock_released", self)
        if not held:
            self.lost.set()
            raise LockExpiredError(
                f"lock {self.name!r} (fencing token {self.fencing_token}) was no longer held "
                "when released: mutual exclusion may have been lost"
            )

    async def is_held(self) -> bool:
        """Ask the backend whether this guard still holds its lock."""
        locks = self._locks
        return await locks._run("is_held", locks._is_held(self.name, self.owner))

    @property
    def fence(self) -> Fence:
        """What a fenced write (``ly.store.set(..., fence=guard)``) checks: this acquisition."""
        return Fence("lock", self.name, self.owner, self.fencing_token)


class DistributedLock(abc.ABC):
    """Named, expiring, non-re-entrant locks with fencing tokens."""

    #: Longest pause between attempts while waiting; only reached when release signals are lost
    #: (or the backend has none).
    poll_cap_s: float = 0.5
    poll_initial_s: float = 0.005
    #: A queued waiter's entry lives this long after each attempt (backends that queue).
    waiter_lease_s: float = DEFAULT_WAITER_LEASE_S
    #: Whether a waiting ``acquire`` first calls :meth:`_take_if_unwanted`, outside any queue.
    takes_unwanted_locks_first: bool = False
    #: Whether calls may be driven in a calling thread, their I/O done there
    #: (:mod:`lockyard.lanes`); such a backend implements :meth:`_take_if_unwanted`.
    serves_lanes: bool = False

    def __init__(
        self,
        runner: OperationRunner,
        clock: Clock = SYSTEM_CLOCK,
        signals: ReleaseSignals | None = None,
    ) -> None:
        self._run = runner
        self.clock = clock
        #: Where this backend's releases wake waiters (``lockyard.signals``); ``None``: waiters
        #: only poll.
        self.release_signals = signals
        self._observers: list[LockObserver] = []
        self._queue_exit = QueueExit("lock")
        #: name -> how many ``acquire`` calls of this process wait for it (in the loop's tasks).
        self._waiting: dict[str, int] = {}

    # -- public API ------------------------------------------------------------------------
    @telemetry.instrument_acquire("try_acquire")
    async def try_acquire(self, name: str, ttl: Duration) -> LockGuard | None:
        """One attempt: a guard, or ``None`` if anyone holds a live lock of that name."""
        name, ms = check_acquirable_name(name), lock_ttl_to_ms(ttl)
        owner = new_owner_token()
        started = self.clock.monotonic()
        attempt = await self._run("try_acquire", self._try_acquire(name, owner, ms))
        if attempt.fencing_token is None:
            return None
        return self._new_guard(name, owner, attempt.fencing_token, ms, started)

    @telemetry.instrument_acquire("acquire")
    async def acquire(self, name: str, ttl: Duration, timeout: Duration) -> LockGuard:
        """Wait up to ``timeout`` (0 makes one attempt); ``LockTimeoutError`` when it runs out.

        With a timeout above 0 the caller queues (on backends that queue): it gets the lock in
        its turn, after the waiters that came before it.
        """
        name, ms = check_acquirable_name(name), lock_ttl_to_ms(ttl)
        return await self._acquire_owned(name, new_owner_token(), ms, timeout_to_seconds(timeout))

    async def _acquire_owned(self, name: str, owner: str, ms: int, wait_s: float) -> LockGuard:
        """``acquire`` under a chosen owner token (elections); ``wait_s`` may be ``math.inf``."""
        if wait_s <= 0:  # one attempt, which takes a free lock like try_acquire
            started = self.clock.monotonic()
            once = await self._run("acquire", self._try_acquire(name, owner, ms))
            if once.fencing_token is None:
                raise self._timed_out(name, wait_s)
            return self._new_guard(name, owner, once.fencing_token, ms, started)
        started = self.clock.monotonic()
        deadline = started + wait_s
        in_lane = lanes.active()
        # A name that a waiter of this process waits for is wanted: that attempt would only be
        # refused (read without a lock from a lane: a stale answer costs one round trip).
        if (self.takes_unwanted_locks_first or in_lane) and name not in self._waiting:
            # Most acquisitions find the lock free: take it before opening a release watch,
            # which only a refused attempt needs (the next attempt starts after the watch).
            # In a lane this is the one attempt that can run there: waiting needs the loop.
            fencing = await self._run("acquire", self._take_if_unwanted(name, owner, ms))
            if fencing is not None:
                return self._new_guard(name, owner, fencing, ms, started)
        if in_lane:
            return await lanes.on_loop(self._wait_in_queue(name, owner, ms, wait_s, deadline))
        return await self._wait_in_queue(name, owner, ms, wait_s, deadline)

    async def _wait_in_queue(
        self, name: str, owner: str, ms: int, wait_s: float, deadline: float
    ) -> LockGuard:
        """The waiting part of ``acquire``: queue, watch for releases, attempt until granted."""
        waiting = self._waiting
        waiting[name] = waiting.get(name, 0) + 1
        try:
            return await self._wait_for_turn(name, owner, ms, wait_s, deadline)
        finally:
            left = waiting[name] - 1
            if left:
                waiting[name] = left
            else:
                del waiting[name]

    async def _wait_for_turn(
        self, name: str, owner: str, ms: int, wait_s: float, deadline: float
    ) -> LockGuard:
        policy = WaitPolicy(self.poll_initial_s, self.poll_cap_s, self.waiter_lease_s)
        wait_ms = policy.wait_ms

        def attempt() -> Awaitable[AcquireAttempt]:
            return self._run("acquire", self._try_acquire(name, owner, ms, wait_ms))

        def leave() -> Awaitable[None]:
            return self._run("leave_queue", self._leave_queue(name, owner))

        # Watch before the first attempt, so a release between attempt and wait is not missed.
        async with self.watch_releases(name, owner) as watch:
            try:
                granted, started = await wait_for_turn(
                    attempt,
                    watch,
                    self.clock,
                    deadline,
                    policy,
                    lambda: self._timed_out(name, wait_s),
                )
            except asyncio.CancelledError:
                await self._queue_exit.shielded(name, leave)
                raise
            except Exception:
                await self._queue_exit.quietly(name, leave)
                raise
        assert granted.fencing_token is not None
        return self._new_guard(name, owner, granted.fencing_token, ms, started)

    def hold(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
    ) -> LockHold:
        """``async with locks.hold(...) as guard:`` acquire, renew every ttl/3, detect loss."""
        return LockHold(self, check_acquirable_name(name), lock_ttl_to_ms(ttl), timeout, auto_renew)

    async def holder(self, name: str) -> LockInfo | None:
        """The live lock of ``name`` (owner, fencing token, lease left), or ``None``; one read."""
        return await self._run("holder", self._holder(check_lock_name(name)))

    def observe(self, name: str, *, poll_interval: Duration | None = None) -> LockObservation:
        """Every change of lock ``name``: ``async for event in locks.observe(name):``.

        Events (:class:`lockyard.observe.LockEvent`) are acquired, extended, released, expired
        and broken, with the holder's owner prefix and fencing token; the first is the current
        holder, if any. How changes are learned: :mod:`lockyard.observe`.
        """
        from lockyard.observe import observe

        return observe(self, name, poll_interval=poll_interval)

    def observe_prefix(
        self, prefix: str, *, poll_interval: Duration | None = None
    ) -> LockObservation:
        """Every change of every lock whose name starts with ``prefix``, like :meth:`observe`."""
        from lockyard.observe import observe_prefix

        return observe_prefix(self, prefix, poll_interval=poll_interval)

    async def list_held(self) -> list[LockInfo]:
        """Every live lock of this store (order unspecified)."""
        return await self._run("list_held", self._list_held())

    @telemetry.instrument_break
    async def break_lock(self, name: str) -> bool:
        """Force-release ``name`` whoever holds it; the next holder gets a higher fencing token."""
        name = check_lock_name(name)
        # Optional in LockObserver (the Lease mirror predates them): lockyard.observe.
        self._notify_optional("lock_breaking", name)
        broken = False
        try:
            broken = await self._run("break_lock", self._break(name))
        finally:
            self._notify_optional("lock_broken" if broken else "lock_not_broken", name)
        return broken

    def add_observer(self, observer: LockObserver) -> None:
        self._observers.append(observer)

    # -- backend primitives ----------------------------------------------------------------
    @abc.abstractmethod
    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        """Take the lock if free (or expired), bumping the fencing counter in the same step.

        ``wait_ms=None`` (``try_acquire``, ``acquire(timeout=0)``): take it if free, whoever
        waits. Otherwise the caller waits: take it only if it is free and no live waiter is
        queued ahead of ``owner`` (then remove ``owner``'s entry in the same step); if not,
        queue ``owner`` (or keep its place) with an entry that expires ``wait_ms`` from now, and
        answer ``queued=True``. A backend without a queue ignores ``wait_ms``.
        """

    @abc.abstractmethod
    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        """If ``owner`` holds it: lease = now + ttl, ``True``; otherwise ``False``, untouched."""

    @abc.abstractmethod
    async def _release(self, name: str, owner: str) -> bool:
        """If ``owner`` holds it: release (and signal waiters), ``True``; otherwise ``False``."""

    @abc.abstractmethod
    async def _is_held(self, name: str, owner: str) -> bool: ...

    @abc.abstractmethod
    async def _break(self, name: str) -> bool:
        """Release regardless of owner; ``True`` if a live lock was removed."""

    @abc.abstractmethod
    async def _list_held(self) -> list[LockInfo]: ...

    async def _holder(self, name: str) -> LockInfo | None:
        """The live lock of ``name``, or ``None``. Backends read the one lock in one round trip;
        this default scans every held lock, so it is correct but costs what ``list_held`` does."""
        for info in await self._list_held():
            if info.name == name:
                return info
        return None

    async def _take_if_unwanted(self, name: str, owner: str, ttl_ms: int) -> int | None:
        """The first attempt of a waiting ``acquire``, on backends that set
        ``takes_unwanted_locks_first`` and in a lane (:mod:`lockyard.lanes`): take ``name``
        if it is free and nobody waits for it, and return the fencing token; otherwise change
        nothing (queue nobody) and return ``None``. Not called while a waiter of this process
        waits for ``name`` (it is contended). The waiting attempts that follow queue as
        ``_try_acquire`` does.
        """
        raise NotImplementedError(f"{type(self).__name__} does not take unwanted locks first")

    async def _leave_queue(self, name: str, owner: str) -> None:
        """Remove ``owner`` from ``name``'s queue; if the lock is free, signal the new head.

        Best effort (the entry expires with its waiter lease anyway); the default, for backends
        without a queue, does nothing.
        """
        return

    def watch_releases(
        self, name: str, owner: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[ReleaseWatch]:
        """A waiter's watch on ``name``, woken by the backend's release signals, if it has any.

        ``owner`` is the waiter's token: a signal that names the next owner need only wake it.
        Without release signals the watch only sleeps.
        """
        signals = self.release_signals
        if signals is None:
            return contextlib.nullcontext(SleepWatch(self.clock))
        return signals.watch_releases(name, owner)

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _timed_out(name: str, wait_s: float) -> LockTimeoutError:
        return LockTimeoutError(
            f"lock {name!r} is still held by another owner after waiting {wait_s:g}s"
        )

    def _new_guard(
        self, name: str, owner: str, fencing_token: int, ttl_ms: int, started: float
    ) -> LockGuard:
        guard = LockGuard(self, name, owner, fencing_token, ttl_ms, started)
        if self._observers:  # most handles have none: no call per acquisition then
            self._notify("lock_acquired", guard)
        return guard

    def _notify(self, event: str, guard: LockGuard) -> None:
        # Observers queue work on the loop; from a lane they are called there (lockyard.lanes).
        for observer in self._observers:
            lanes.soon(getattr(observer, event), guard)

    def _notify_optional(self, method: str, name: str) -> None:
        for observer in self._observers:
            notify = getattr(observer, method, None)
            if notify is not None:
                notify(name)


def new_owner_token() -> str:
    """A random token unique to one acquisition (128 bits)."""
    # What secrets.token_hex(16) returns, without its three Python calls (once per acquisition).
    return os.urandom(16).hex()


class LockHold(LeaseHold[LockGuard]):
    """The context manager behind ``DistributedLock.hold`` (and a leadership's term).

    Renewal and loss detection are :class:`lockyard.holding.LeaseHold`'s. ``owner``: hold under
    this owner token instead of a fresh one, waiting up to ``timeout`` (``None``: for ever).
    ``bind_block=False``: loss sets ``guard.lost`` but cancels no task (a leadership taken with
    ``await``, which has no block).
    """

    what = "lock"

    def __init__(
        self,
        locks: DistributedLock,
        name: str,
        ttl_ms: int,
        timeout: Duration | None,
        auto_renew: bool,
        *,
        owner: str | None = None,
        bind_block: bool = True,
    ) -> None:
        super().__init__(locks.clock, ttl_ms, auto_renew, bind_block)
        self._locks = locks
        self._name = name
        self._timeout = timeout
        self._owner = owner

    async def _acquire(self) -> LockGuard:
        locks = self._locks
        if self._owner is None:
            assert self._timeout is not None
            return await locks.acquire(self._name, self._ttl_ms / 1000, self._timeout)
        wait_s = math.inf if self._timeout is None else timeout_to_seconds(self._timeout)
        return await locks._acquire_owned(self._name, self._owner, self._ttl_ms, wait_s)

    @telemetry.instrument_hold_enter
    async def __aenter__(self) -> LockGuard:
        return await super().__aenter__()

    @telemetry.instrument_hold_exit
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
