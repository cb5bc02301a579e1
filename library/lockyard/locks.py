"""Distributed locks: ``DistributedLock`` hands out ``LockGuard`` leases with fencing tokens.

The acquisition loop, auto-renewal and loss detection live here once; a backend supplies five
owner-checked primitives (acquire, extend, release, is-held, break) and, optionally, a way to be
woken when a lock is released (pub/sub, LISTEN/NOTIFY, an in-process event). Waiters never busy
poll: they sleep until a release signal, the holder's lease end, or a capped, jittered backoff,
whichever comes first; the backoff only matters when a signal is lost.

Observers (the Kubernetes Lease mirror) are told of acquisitions, renewals and releases through
plain synchronous callbacks that must only enqueue work: lock operations never wait for them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.durations import Duration, lock_ttl_to_ms, timeout_to_seconds
from lockyard.errors import LockExpiredError, LockLostError, LockTimeoutError, StateError
from lockyard.operations import OperationRunner

#: The longest lock name, in bytes of UTF-8.
MAX_LOCK_NAME_LENGTH = 512
DEFAULT_HOLD_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AcquireAttempt:
    """What one acquisition round trip found: a fencing token, or the holder's remaining lease."""

    fencing_token: int | None
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A live lock as the backend sees it (for inspection, reaping and ``lockyard locks``)."""

    name: str
    owner: str
    fencing_token: int
    expires_in_ms: int


class ReleaseWatch(Protocol):
    """Wakes a waiter when the watched lock may have been released."""

    async def wait(self, timeout: float) -> None:
        """Return on a release signal or after ``timeout`` seconds, whichever is first."""
        ...


class SleepWatch:
    """The fallback watch: no signal, only the (already jittered) pause."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def wait(self, timeout: float) -> None:
        await self._clock.sleep(timeout)


class ReleaseWaiters:
    """Per-name events a backend's release listener sets (pub/sub, LISTEN/NOTIFY).

    Each waiting ``acquire`` registers one event under its lock name; a release message for
    that name sets them, and a reconnect sets all (messages may have been lost meanwhile).
    """

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    def watch(self, name: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(name, set()).add(event)
        return event

    def unwatch(self, name: str, event: asyncio.Event) -> None:
        events = self._events.get(name)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[name]

    def wake(self, name: str) -> None:
        for event in self._events.get(name, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()


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
        "_locks",
        "_released",
        "fencing_token",
        "lease_ms",
        "lost",
        "name",
        "owner",
        "renewed_at",
    )

    def __init__(
        self, locks: DistributedLock, name: str, owner: str, fencing_token: int, lease_ms: int
    ) -> None:
        self._locks = locks
        self.name = name
        self.owner = owner
        self.fencing_token = fencing_token
        self.lease_ms = lease_ms
        self.renewed_at = locks.clock.wall()
        self.lost = asyncio.Event()
        self._released = False

    def __repr__(self) -> str:
        return f"LockGuard(name={self.name!r}, fencing_token={self.fencing_token})"

    async def extend(self, ttl: Duration) -> None:
        """Set the remaining lease to ``ttl`` from now; ``LockExpiredError`` if no longer held."""
        ms = lock_ttl_to_ms(ttl)
        locks = self._locks
        held = await locks._run("extend", locks._extend(self.name, self.owner, ms))
        if not held:
            self.lost.set()
            raise LockExpiredError(
                f"lock {self.name!r} (fencing token {self.fencing_token}) is no longer held by "
                "this guard: it expired, was released or was taken by another owner"
            )
        self.lease_ms = ms
        self.renewed_at = locks.clock.wall()
        locks._notify("lock_extended", self)

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

    def __init__(self, runner: OperationRunner, clock: Clock = SYSTEM_CLOCK) -> None:
        self._run = runner
        self.clock = clock
        self._observers: list[LockObserver] = []

    # -- public API ------------------------------------------------------------------------
    async def try_acquire(self, name: str, ttl: Duration) -> LockGuard | None:
        """One attempt: a guard, or ``None`` if anyone holds a live lock of that name."""
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
        owner = new_owner_token()
        attempt = await self._run("try_acquire", self._try_acquire(name, owner, ms))
        if attempt.fencing_token is None:
            return None
        return self._new_guard(name, owner, attempt.fencing_token, ms)

    async def acquire(self, name: str, ttl: Duration, timeout: Duration) -> LockGuard:
        """Wait up to ``timeout`` (0 makes one attempt); ``LockTimeoutError`` when it runs out."""
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
        wait_s = timeout_to_seconds(timeout)
        owner = new_owner_token()
        deadline = self.clock.monotonic() + wait_s
        backoff = self.poll_initial_s
        # Watch before the first attempt, so a release between attempt and wait is not missed.
        async with self.watch_releases(name) as watch:
            while True:
                attempt = await self._run("acquire", self._try_acquire(name, owner, ms))
                if attempt.fencing_token is not None:
                    return self._new_guard(name, owner, attempt.fencing_token, ms)
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    raise LockTimeoutError(
                        f"lock {name!r} is still held by another owner after waiting {wait_s:g}s"
                    )
                pause = random.uniform(backoff / 2, backoff)
                if attempt.retry_after_ms is not None:
                    # Never sleep past the holder's lease end: an expired lock is free.
                    pause = min(pause, attempt.retry_after_ms / 1000 + 0.001)
                await watch.wait(min(pause, remaining))
                backoff = min(backoff * 2, self.poll_cap_s)

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

    async def break_lock(self, name: str) -> bool:
        """Force-release ``name`` whoever holds it; the next holder gets a higher fencing token."""
        return await self._run("break_lock", self._break(check_lock_name(name)))

    def add_observer(self, observer: LockObserver) -> None:
        self._observers.append(observer)

    # -- backend primitives ----------------------------------------------------------------
    @abc.abstractmethod
    async def _try_acquire(self, name: str, owner: str, ttl_ms: int) -> AcquireAttempt:
        """Take the lock if free (or expired), bumping the fencing counter in the same step."""

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

    @contextlib.asynccontextmanager
    async def watch_releases(self, name: str) -> AsyncIterator[ReleaseWatch]:
        """Override with a real signal (pub/sub, LISTEN/NOTIFY); the default only sleeps."""
        yield SleepWatch(self.clock)

    # -- internals -------------------------------------------------------------------------
    def _new_guard(self, name: str, owner: str, fencing_token: int, ttl_ms: int) -> LockGuard:
        guard = LockGuard(self, name, owner, fencing_token, ttl_ms)
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

    async def __aenter__(self) -> LockGuard:
        guard = await self._locks.acquire(self._name, self._ttl_ms / 1000, self._timeout)
        self._guard = guard
        if self._auto_renew:
            self._block = asyncio.current_task()
            self._renewer = asyncio.create_task(
                self._renew_until_lost(guard), name=f"lockyard-renew:{self._name}"
            )
        return guard

    async def _renew_until_lost(self, guard: LockGuard) -> None:
        clock = self._locks.clock
        interval = self._ttl_ms / 3000
        lease_end = clock.monotonic() + self._ttl_ms / 1000
        while True:
            await clock.sleep(interval)
            try:
                await guard.extend(self._ttl_ms / 1000)
                lease_end = clock.monotonic() + self._ttl_ms / 1000
                interval = self._ttl_ms / 3000
            except LockExpiredError:
                break
            except StateError:
                # A transient backend failure: retry sooner while the lease can still be saved.
                if clock.monotonic() >= lease_end:
                    break
                interval = max(0.01, min(interval, (lease_end - clock.monotonic()) / 3))
        guard.lost.set()
        if self._block is not None and not self._block.done():
            self._cancelled_block = True
            self._block.cancel(f"lockyard: lock {guard.name!r} was lost")

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
