"""Waiting for a turn: the attempt loop every waiting ``acquire`` runs (locks, semaphores,
read-write locks), and leaving the queue when the waiter gives up.

A waiter watches its release signals (:mod:`lockyard.signals`) before its first attempt that can
queue it, so a release between an attempt and the wait is not missed (an attempt that queues
nobody may come before: ``DistributedLock.takes_unwanted_locks_first``). Each attempt is one
round trip that either grants the lease or queues (or keeps) the waiter with a waiter lease. A
queued waiter with a live watch is told when its turn comes, so it polls only to renew its
waiter lease; one without a live watch backs off (capped, jittered). A waiter never sleeps past
the time the attempt said the lease in its way ends (``retry_after_ms``): an expired lease is
free.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lockyard.clock import Clock
from lockyard.signals import ReleaseWatch

log = logging.getLogger("lockyard.waiting")

#: The most a waiter that gives up spends leaving the queue (best effort: the entry would
#: expire with its waiter lease anyway), so that LockTimeoutError stays within the contract's
#: 100 ms of the timeout whatever the backend's state.
LEAVE_QUEUE_TIMEOUT_S = 0.1


class Attempt(Protocol):
    """What one acquisition round trip answered, as far as waiting is concerned."""

    @property
    def granted(self) -> bool: ...

    @property
    def queued(self) -> bool: ...

    @property
    def retry_after_ms(self) -> int | None: ...


A = TypeVar("A", bound=Attempt)


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How often a waiter re-attempts: first pause, cap, and the waiter lease it renews."""

    poll_initial_s: float
    poll_cap_s: float
    waiter_lease_s: float

    @property
    def wait_ms(self) -> int:
        return max(1, round(self.waiter_lease_s * 1000))

    @property
    def renew_s(self) -> float:
        # A queued waiter re-attempts (renewing its entry) four times per waiter lease at least.
        return min(self.poll_cap_s, self.waiter_lease_s / 4)


async def wait_for_turn(
    attempt: Callable[[], Awaitable[A]],
    watch: ReleaseWatch,
    clock: Clock,
    deadline: float,
    policy: WaitPolicy,
    timed_out: Callable[[], Exception],
) -> tuple[A, float]:
    """Attempt until granted; returns the granting attempt and when it started (monotonic).

    Raises ``timed_out()`` once ``deadline`` (``clock.monotonic()`` seconds) has passed after a
    refused attempt. The caller leaves the queue if this raises (:class:`QueueExit`).
    """
    backoff = policy.poll_initial_s
    renew_s = policy.renew_s
    while True:
        started = clock.monotonic()
        answer = await attempt()
        if answer.granted:
            return answer, started
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise timed_out()
        if answer.queued and watch.live:
            # Our turn comes with a signal addressed to us; polling only renews the waiter
            # lease (and covers a lost signal).
            pause = random.uniform(renew_s / 2, renew_s)
        else:
            pause = random.uniform(backoff / 2, backoff)
            if answer.queued:
                pause = min(pause, renew_s)
            backoff = min(backoff * 2, policy.poll_cap_s)
        if answer.retry_after_ms is not None:
            # Never sleep past the end of the lease in the way: an expired lease is free.
            pause = min(pause, answer.retry_after_ms / 1000 + 0.001)
        calm_ms = getattr(answer, "calm_ms", None)
        if calm_ms:
            # A polling backend saw this waiter far back in its queue: sooner is pointless.
            pause = max(pause, calm_ms / 1000)
        await watch.wait(min(pause, remaining))


class QueueExit:
    """Leaving a queue when a waiter gives up: bounded, silent, and surviving cancellation."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._leaving: set[asyncio.Future[None]] = set()

    async def quietly(self, name: str, leave: Callable[[], Awaitable[None]]) -> None:
        """Leave, bounded and silent: the caller is already raising its own error."""
        try:
            async with asyncio.timeout(LEAVE_QUEUE_TIMEOUT_S):
                await leave()
        except Exception as exc:  # best effort: the entry expires with its waiter lease
            log.debug("lockyard: leaving the queue of %s %r failed: %r", self._what, name, exc)

    async def shielded(self, name: str, leave: Callable[[], Awaitable[None]]) -> None:
        """Leave after a cancellation; a second cancellation lets it finish alone."""
        leaving = asyncio.ensure_future(self.quietly(name, leave))
        try:
            await asyncio.shield(leaving)
        except asyncio.CancelledError:
            self._leaving.add(leaving)
            leaving.add_done_callback(self._leaving.discard)
