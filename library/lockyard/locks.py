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
import random
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.durations import Duration, lock_ttl_to_ms, timeout_to_seconds
from lockyard.errors import LockExpiredError, LockLostError, LockTimeoutError, StateError
from lockyard.operations import OperationRunner
from lockyard.signals import ReleaseSignals, ReleaseWatch, SleepWatch

# Re-exported: they lived here before lockyard.signals, and callers import them from here.
from lockyard.signals import ReleaseWaiters as ReleaseWaiters
from lockyard.signals import parse_release_signal as parse_release_signal
from lockyard.signals import release_signal as release_signal
from lockyard.telemetry import hooks as telemetry

log = logging.getLogger("lockyard.locks")

#: The longest lock name, in bytes of UTF-8.
MAX_LOCK_NAME_LENGTH = 512
DEFAULT_HOLD_TIMEOUT_S = 30.0
#: How long a queued waiter's entry lives without a new attempt (see the module docstring).
DEFAULT_WAITER_LEASE_S = 2.0
#: The most a waiter that gives up spends leaving the queue (best effort: the entry would
#: expire with its waiter lease anyway), so that LockTimeoutError stays within the contract's
#: 100 ms of the timeout whatever the backend's state.
LEAVE_QUEUE_TIMEOUT_S = 0.1
#: ``hold()`` declares its lease lost this fraction of the TTL before the local deadline (the
#: start of the last confirmed acquiring or renewing call plus the TTL), so the cancelled block
#: has time to stop before another owner can take the lock; bounded below and above.
LOSS_MARGIN_FRACTION = 0.1
LOSS_MARGIN_MIN_S = 0.005
LOSS_MARGIN_MAX_S = 1.0


def loss_margin_s(ttl_s: float) -> float:
    """How long before its local lease deadline a holder gives the lease up."""
    return min(max(ttl_s * LOSS_MARGIN_FRACTION, LOSS_MARGIN_MIN_S), LOSS_MARGIN_MAX_S)


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


class LockGuard:
    """One acquisition of a lock. Holds its owner token; checks ownership on the backend."""

    __slots__ = (
        "__weakref__",  # telemetry notices a guard dropped unreleased
        "_locks",
        "_released",
        "fencing_token",
        "lease_deadline",
        "lease_ms",
        "lost",
        "name",
        "owner",
        "renewed_at",
    )

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
        self.name = name
        self.owner = owner
        self.fencing_token = fencing_token
        self.lease_ms = lease_ms
        #: The holder's own bound on its lease (``clock.monotonic()`` seconds): the start of the
        #: call that acquired or last renewed it plus its TTL. The backend's lease began after
        #: that call started, so it cannot end before this.
        self.lease_deadline = started + lease_ms / 1000
        self.renewed_at = locks.clock.wall()
        self.lost = asyncio.Event()
        self._released = False

    def __repr__(self) -> str:
        return f"LockGuard(name={self.name!r}, fencing_token={self.fencing_token})"

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
        self.lease_ms = ms
        self.lease_deadline = started + ms / 1000
        self.renewed_at = locks.clock.wall()
        locks._notify("lock_extended", self)

    @telemetry.instrument_guard("release")
    async def release(self) -> None:
        """Release the lock; ``LockExpiredError`` if this guard no longer held it."""
        locks = self._locks
        held = await locks._run("release", locks._release(self.name, self.owner))
        self._released = True
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
    def released(self) -> bool:
        return self._released

    async def __aenter__(self) -> LockGuard:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._released:
            return
        try:
            await self.release()
        except StateError as release_error:
            if exc is None:
                raise
            # The block's own exception matters more; keep the release failure beside it.
            exc.add_note(f"lockyard: releasing {self.name!r} also failed: {release_error}")


class DistributedLock(abc.ABC):
    """Named, expiring, non-re-entrant locks with fencing tokens."""

    #: Longest pause between attempts while waiting; only reached when release signals are lost
    #: (or the backend has none).
    poll_cap_s: float = 0.5
    poll_initial_s: float = 0.005
    #: A queued waiter's entry lives this long after each attempt (backends that queue).
    waiter_lease_s: float = DEFAULT_WAITER_LEASE_S

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
        self._leaving: set[asyncio.Future[None]] = set()

    # -- public API ------------------------------------------------------------------------
    @telemetry.instrument_acquire("try_acquire")
    async def try_acquire(self, name: str, ttl: Duration) -> LockGuard | None:
        """One attempt: a guard, or ``None`` if anyone holds a live lock of that name."""
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
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
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
        wait_s = timeout_to_seconds(timeout)
        owner = new_owner_token()
        if wait_s <= 0:  # one attempt, which takes a free lock like try_acquire
            started = self.clock.monotonic()
            attempt = await self._run("acquire", self._try_acquire(name, owner, ms))
            if attempt.fencing_token is None:
                raise self._timed_out(name, wait_s)
            return self._new_guard(name, owner, attempt.fencing_token, ms, started)
        deadline = self.clock.monotonic() + wait_s
        backoff = self.poll_initial_s
        wait_ms = max(1, round(self.waiter_lease_s * 1000))
        # A queued waiter re-attempts (renewing its entry) four times per waiter lease at least.
        renew_s = min(self.poll_cap_s, self.waiter_lease_s / 4)
        # Watch before the first attempt, so a release between attempt and wait is not missed.
        async with self.watch_releases(name, owner) as watch:
            try:
                while True:
                    started = self.clock.monotonic()
                    attempt = await self._run(
                        "acquire", self._try_acquire(name, owner, ms, wait_ms)
                    )
                    if attempt.fencing_token is not None:
                        return self._new_guard(name, owner, attempt.fencing_token, ms, started)
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0:
                        raise self._timed_out(name, wait_s)
                    if attempt.queued and watch.live:
                        # Our turn comes with a signal addressed to us; polling only renews
                        # the waiter lease (and covers a lost signal).
                        pause = random.uniform(renew_s / 2, renew_s)
                    else:
                        pause = random.uniform(backoff / 2, backoff)
                        if attempt.queued:
                            pause = min(pause, renew_s)
                        backoff = min(backoff * 2, self.poll_cap_s)
                    if attempt.retry_after_ms is not None:
                        # Never sleep past the holder's lease end: an expired lock is free.
                        pause = min(pause, attempt.retry_after_ms / 1000 + 0.001)
                    await watch.wait(min(pause, remaining))
            except asyncio.CancelledError:
                await self._leave_shielded(name, owner)
                raise
            except Exception:
                await self._leave_quietly(name, owner)
                raise

    def hold(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
    ) -> LockHold:
        """``async with locks.hold(...) as guard:`` acquire, renew every ttl/3, detect loss."""
        return LockHold(self, check_lock_name(name), lock_ttl_to_ms(ttl), timeout, auto_renew)

    async def list_held(self) -> list[LockInfo]:
        """Every live lock of this store (order unspecified)."""
        return await self._run("list_held", self._list_held())

    @telemetry.instrument_break
    async def break_lock(self, name: str) -> bool:
        """Force-release ``name`` whoever holds it; the next holder gets a higher fencing token."""
        return await self._run("break_lock", self._break(check_lock_name(name)))

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

    async def _leave_quietly(self, name: str, owner: str) -> None:
        """Leave the queue, bounded and silent: the caller is already raising its own error."""
        try:
            async with asyncio.timeout(LEAVE_QUEUE_TIMEOUT_S):
                await self._run("leave_queue", self._leave_queue(name, owner))
        except Exception as exc:  # best effort: the entry expires with its waiter lease
            log.debug("lockyard: leaving the queue of lock %r failed: %r", name, exc)

    async def _leave_shielded(self, name: str, owner: str) -> None:
        """Leave the queue after a cancellation; a second cancellation lets it finish alone."""
        leave = asyncio.ensure_future(self._leave_quietly(name, owner))
        try:
            await asyncio.shield(leave)
        except asyncio.CancelledError:
            self._leaving.add(leave)
            leave.add_done_callback(self._leaving.discard)

    def _new_guard(
        self, name: str, owner: str, fencing_token: int, ttl_ms: int, started: float
    ) -> LockGuard:
        guard = LockGuard(self, name, owner, fencing_token, ttl_ms, started)
        self._notify("lock_acquired", guard)
        return guard

    def _notify(self, event: str, guard: LockGuard) -> None:
        for observer in self._observers:
            getattr(observer, event)(guard)


def new_owner_token() -> str:
    """A random token unique to one acquisition (128 bits)."""
    return secrets.token_hex(16)


class LockHold:
    """The context manager behind ``DistributedLock.hold``."""

    def __init__(
        self,
        locks: DistributedLock,
        name: str,
        ttl_ms: int,
        timeout: Duration,
        auto_renew: bool,
    ) -> None:
        self._locks = locks
        self._name = name
        self._ttl_ms = ttl_ms
        self._timeout = timeout
        self._auto_renew = auto_renew
        self._guard: LockGuard | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._block: asyncio.Task[object] | None = None
        self._cancelled_block = False

    @telemetry.instrument_hold_enter
    async def __aenter__(self) -> LockGuard:
        guard = await self._locks.acquire(self._name, self._ttl_ms / 1000, self._timeout)
        self._guard = guard
        self._block = asyncio.current_task()
        self._renewer = asyncio.create_task(
            self._renew_until_lost(guard), name=f"lockyard-renew:{self._name}"
        )
        return guard

    async def _renew_until_lost(self, guard: LockGuard) -> None:
        """Renew every ttl/3 (when asked to); declare loss at the local deadline at the latest.

        Loss is declared when the backend says the lock is gone, or when no renewal has been
        confirmed ``loss_margin_s(ttl)`` before ``guard.lease_deadline``, whatever the operation
        timeout and however the backend misbehaves (stopped, partitioned, slow): a renewal still
        in flight then is abandoned, since its outcome can no longer make the block safe.
        """
        clock = self._locks.clock
        ttl_s = self._ttl_ms / 1000
        margin = loss_margin_s(ttl_s)
        interval = ttl_s / 3
        while True:
            remaining = guard.lease_deadline - margin - clock.monotonic()
            if remaining <= 0:
                break
            if not self._auto_renew:
                await clock.sleep(remaining)
                continue
            await clock.sleep(min(interval, remaining))
            remaining = guard.lease_deadline - margin - clock.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await guard.extend(ttl_s)
                interval = ttl_s / 3
            except LockExpiredError:
                break
            except (StateError, TimeoutError):
                # Transient, or too slow to save this lease: retry sooner while it can be saved.
                left = guard.lease_deadline - margin - clock.monotonic()
                interval = max(0.01, min(interval, left / 3))
        guard.lost.set()
        if self._block is not None and not self._block.done():
            self._cancelled_block = True
            self._block.cancel(f"lockyard: lock {guard.name!r} was lost")

    @telemetry.instrument_hold_exit
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guard = self._guard
        assert guard is not None
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._cancelled_block and self._block is not None:
            # Our own cancellation: turn it into the documented error, not a bare cancel.
            self._block.uncancel()
            raise LockLostError(
                f"lock {guard.name!r} (fencing token {guard.fencing_token}) was lost while the "
                "block ran; the block was cancelled"
            ) from None
        try:
            await guard.release()
        except LockExpiredError as err:
            guard.lost.set()
            if exc is None:
                raise LockLostError(str(err)) from err
            exc.add_note(f"lockyard: releasing {guard.name!r} also failed: {err}")
