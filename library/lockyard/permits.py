"""Weighted permits: the one mechanism behind semaphores and read-write locks.

A *permit table* keeps, per name, a capacity (``limit``), the live holders (each a lease with
its own owner token, weight, deadline and fencing token) and a FIFO queue of waiters. One rule
decides every attempt, on every backend, in one round trip:

    grant when  weight of the live holders + weight of the live waiters ahead + own weight
                <= limit

A waiting attempt counts the waiters queued ahead of it; ``try_acquire``-style attempts do not
queue and count either nobody (a semaphore: take a free permit whoever waits, like a lock's
``try_acquire``) or every waiter (a read lock: so that readers cannot overtake a waiting
writer). Expired holders and waiters count for nothing and are dropped by the attempt itself.
A semaphore is a table whose holders weigh 1 and whose limit is N; a read-write lock one whose
limit is :data:`RW_CAPACITY`, where a reader weighs 1 and a writer the whole capacity, which
gives "any number of readers or one writer", and, with the queue, writer preference.

A release (or break, or a waiter leaving) signals the waiters that now fit, in queue order,
stopping at the first that does not (:mod:`lockyard.signals`, under the signal name
``"<space>:<name>"``). The first use of a name fixes its limit; an attempt with another limit
is refused (``limit_conflict``) and nothing changes. The fencing counter of a name only grows.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.durations import Duration, lock_ttl_to_ms
from lockyard.errors import LockExpiredError
from lockyard.fenced_writes import Fence
from lockyard.held_lease import HeldLease
from lockyard.locks import DEFAULT_WAITER_LEASE_S
from lockyard.operations import OperationRunner
from lockyard.signals import ReleaseSignals, ReleaseWatch, SleepWatch
from lockyard.waiting import QueueExit, WaitPolicy, wait_for_turn

#: The capacity of a read-write lock: a reader weighs 1, a writer all of it.
RW_CAPACITY = 2**30
#: How many waiters one release signals at most (the rest re-attempt when they poll).
MAX_SIGNALLED = 256


@dataclass(frozen=True, slots=True)
class PermitAttempt:
    """What one attempt found: a fencing token, or when to try again, or a limit conflict.

    ``limit_conflict``: the limit the name was first used with, when the caller's differs (the
    attempt changed nothing). ``calm_ms``: a backend without release signals saw the caller so
    far back in the queue that re-attempting sooner cannot help (it lengthens the poll).
    """

    fencing_token: int | None
    retry_after_ms: int | None = None
    queued: bool = False
    limit_conflict: int | None = None
    calm_ms: int | None = None

    @property
    def granted(self) -> bool:
        return self.fencing_token is not None


@dataclass(frozen=True, slots=True)
class HolderInfo:
    """One live holder of a permit table (for inspection, ``lockyard locks`` and tests)."""

    name: str
    owner: str
    fencing_token: int
    expires_in_ms: int
    weight: int
    limit: int


class PermitObserver(Protocol):
    """Told of a permit's life (the Lease mirror); must return at once, as a ``LockObserver``.

    ``permit_released`` is also called when an extend finds the permit gone (broken or
    expired), so a mirror removes its Lease without waiting for the lease to run out.
    """

    def permit_acquired(self, guard: PermitGuard) -> None: ...

    def permit_extended(self, guard: PermitGuard) -> None: ...

    def permit_released(self, guard: PermitGuard) -> None: ...


def fitting_waiters(
    used: int, limit: int, waiters: list[tuple[str, int]], cap: int = MAX_SIGNALLED
) -> list[str]:
    """The waiters (``(owner, weight)`` in queue order) that fit now, stopping at the first
    that does not: those a release signals. Backends compute the same on the server."""
    fitting: list[str] = []
    for owner, weight in waiters:
        if used + weight > limit or len(fitting) >= cap:
            break
        used += weight
        fitting.append(owner)
    return fitting


class PermitTable(abc.ABC):
    """A backend's weighted permits in one space (``"semaphore"`` or ``"rwlock"``).

    The backend implements the ``_``-prefixed primitives, each one round trip; this class holds
    the waiting loop (:mod:`lockyard.waiting`), the runner and the release signals.
    """

    poll_cap_s: float = 0.5
    poll_initial_s: float = 0.005
    waiter_lease_s: float = DEFAULT_WAITER_LEASE_S

    def __init__(
        self,
        runner: OperationRunner,
        space: str,
        clock: Clock = SYSTEM_CLOCK,
        signals: ReleaseSignals | None = None,
    ) -> None:
        self._run = runner
        self.space = space
        self.clock = clock
        self.release_signals = signals
        self._queue_exit = QueueExit(space)
        self._observers: list[PermitObserver] = []

    def add_observer(self, observer: PermitObserver) -> None:
        self._observers.append(observer)

    def notify(self, event: str, guard: PermitGuard) -> None:
        """Call ``event`` (``permit_acquired``, ...) on every observer."""
        for observer in self._observers:
            getattr(observer, event)(guard)

    def signal_name(self, name: str) -> str:
        """The name release signals of ``name`` carry (apart from lock names)."""
        return f"{self.space}:{name}"

    # -- backend primitives ----------------------------------------------------------------
    @abc.abstractmethod
    async def _acquire(
        self,
        name: str,
        owner: str,
        weight: int,
        limit: int,
        ttl_ms: int,
        wait_ms: int | None,
        count_queue: bool,
    ) -> PermitAttempt:
        """One attempt by the rule in the module docstring.

        ``wait_ms=None``: the caller does not queue; it counts every live waiter ahead when
        ``count_queue``, none otherwise. A waiting caller (``wait_ms`` set) counts the waiters
        ahead of it; refused, it joins the queue at the tail or keeps its place, with a waiter
        lease of ``wait_ms``, and answers ``queued=True``; granted, its entry goes.
        ``retry_after_ms``: when the first live holder's lease ends (or, with no holder, the
        first waiter's waiter lease), whichever could let the caller in.
        """

    @abc.abstractmethod
    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        """If ``owner`` holds a live permit: lease = now + ttl, ``True``; else ``False``."""

    @abc.abstractmethod
    async def _release(self, name: str, owner: str) -> bool:
        """Remove ``owner``'s live permit and signal the waiters that now fit; ``True`` if it
        was live. Also what breaking a permit does."""

    @abc.abstractmethod
    async def _is_held(self, name: str, owner: str) -> bool: ...

    @abc.abstractmethod
    async def _leave_queue(self, name: str, owner: str) -> None:
        """Remove ``owner`` from the queue; signal the waiters that now fit (best effort)."""

    @abc.abstractmethod
    async def _list_held(self) -> list[HolderInfo]: ...

    # -- shared ----------------------------------------------------------------------------
    def watch_releases(
        self, name: str, owner: str
    ) -> contextlib.AbstractAsyncContextManager[ReleaseWatch]:
        signals = self.release_signals
        if signals is None:
            return contextlib.nullcontext(SleepWatch(self.clock))
        return signals.watch_releases(self.signal_name(name), owner)

    async def take(
        self,
        name: str,
        owner: str,
        weight: int,
        limit: int,
        ttl_ms: int,
        wait_s: float | None,
        count_queue: bool,
        timed_out: Callable[[], Exception],
        conflict: Callable[[int], Exception],
    ) -> tuple[PermitAttempt, float]:
        """Attempt once (``wait_s=None``) or wait up to ``wait_s``; returns the last attempt
        and when it started. Raises ``timed_out()`` when a wait runs out and
        ``conflict(first limit)`` when the name's limit differs from ``limit``."""

        async def attempt_once(operation: str, wait_ms: int | None) -> PermitAttempt:
            answer = await self._run(
                operation,
                self._acquire(name, owner, weight, limit, ttl_ms, wait_ms, count_queue),
            )
            if answer.limit_conflict is not None:
                raise conflict(answer.limit_conflict)
            return answer

        if wait_s is None:
            started = self.clock.monotonic()
            return await attempt_once("try_acquire", None), started
        policy = WaitPolicy(self.poll_initial_s, self.poll_cap_s, self.waiter_lease_s)
        wait_ms = policy.wait_ms

        def leave() -> Awaitable[None]:
            return self._run("leave_queue", self._leave_queue(name, owner))

        async with self.watch_releases(name, owner) as watch:
            try:
                return await wait_for_turn(
                    lambda: attempt_once("acquire", wait_ms),
                    watch,
                    self.clock,
                    self.clock.monotonic() + wait_s,
                    policy,
                    timed_out,
                )
            except asyncio.CancelledError:
                await self._queue_exit.shielded(name, leave)
                raise
            except Exception:
                await self._queue_exit.quietly(name, leave)
                raise

    async def list_held(self) -> list[HolderInfo]:
        return await self._run("list_held", self._list_held())


class PermitGuard(HeldLease):
    """One held permit: its own owner token, lease and fencing token."""

    __slots__ = ("_table", "weight")

    #: What the permit is, in messages.
    what = "permit"
    #: What it is in Leases and ``lockyard locks`` (see :attr:`kind`).
    _kind = "permit"

    def __init__(
        self,
        table: PermitTable,
        name: str,
        owner: str,
        fencing_token: int,
        lease_ms: int,
        started: float,
        weight: int,
    ) -> None:
        self._table = table
        self.weight = weight
        super().__init__(table.clock, name, owner, fencing_token, lease_ms, started)

    def _describe(self) -> str:
        return f"{self.what} of {self.name!r} (fencing token {self.fencing_token})"

    @property
    def kind(self) -> str:
        """What the permit is in Leases and ``lockyard locks`` (the ``lockyard.dev/kind``
        label): ``semaphore``, ``rwlock-read`` or ``rwlock-write``."""
        return self._kind

    @property
    def space(self) -> str:
        """The permit table's space: ``"semaphore"`` or ``"rwlock"``."""
        return self._table.space

    @property
    def fence(self) -> Fence:
        """What a fenced write (``ly.store.set(..., fence=permit)``) checks: this permit."""
        return Fence(self._table.space, self.name, self.owner, self.fencing_token)

    async def extend(self, ttl: Duration) -> None:
        """Set the remaining lease to ``ttl`` from now; ``LockExpiredError`` if no longer held."""
        ms = lock_ttl_to_ms(ttl)
        table = self._table
        started = table.clock.monotonic()
        held = await table._run("extend", table._extend(self.name, self.owner, ms))
        if not held:
            self.lost.set()
            table.notify("permit_released", self)
            raise LockExpiredError(
                f"{self._describe()} is no longer held by this guard: it expired, was released "
                "or was broken"
            )
        self._renewed(table.clock, ms, started)
        table.notify("permit_extended", self)

    async def release(self) -> None:
        """Give the permit back; ``LockExpiredError`` if this guard no longer held it."""
        table = self._table
        held = await table._run("release", table._release(self.name, self.owner))
        self._released = True
        table.notify("permit_released", self)
        if not held:
            self.lost.set()
            raise LockExpiredError(
                f"{self._describe()} was no longer held when released: it expired or was broken"
            )

    async def is_held(self) -> bool:
        """Ask the backend whether this permit is still held."""
        table = self._table
        return await table._run("is_held", table._is_held(self.name, self.owner))
