"""Fixtures and helpers shared by the conformance suite's parts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

import pytest_asyncio

from lockyard.connection import Connection
from lockyard.testing.virtual_time import loop_time

ConnectFactory: TypeAlias = Callable[[str], Awaitable[Connection]]


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def key(kind: str = "state", id_: str | None = None, ns: str = "ns", tenant: str = "acme") -> str:
    return f"{ns}:{tenant}:{kind}:{id_ or uuid.uuid4().hex[:10]}"


#: Pause between two pings of :meth:`ConformanceBase.watching_round_trips` (a backend that
#: answers at once, such as memory, must not keep the event loop busy).
WATCH_PAUSE_S = 0.01
#: Round trips inside a hand-over and inside a timed-out acquire (see the bounds below).
HANDOVER_ROUND_TRIPS = 3
TIMEOUT_ROUND_TRIPS = 2
#: Round trips the loss margin of ``loss_ttl_s`` holds.
LOSS_ROUND_TRIPS = 3


@dataclass
class RoundTripWatch:
    """The slowest round trip seen so far while a timed step ran (seconds)."""

    slowest: float


class ConformanceBase:
    """Provides ``ly`` (a connection on a fresh prefix) and ``open_store`` for extra prefixes."""

    #: Longest time from a release to the next waiter holding the lock (spec: 100 ms, but
    #: DynamoDB has no release signal and only promises its polling bound).
    handover_bound_s: float = 0.1
    #: How late ``acquire`` may raise ``LockTimeoutError`` after its timeout (spec: 100 ms).
    timeout_slack_s: float = 0.1
    #: A TTL long enough to outlive a few round trips on this backend, and the wait past it.
    short_ttl_s: float = 0.3
    expiry_wait_s: float = 0.5
    #: The lease of the loss tests: its margin (10%) must cover a loaded machine's scheduling
    #: delay, so it is longer than ``short_ttl_s``.
    loss_ttl_s: float = 1.0
    #: The slowest of three round trips measured at the start of the test (0 on virtual time).
    round_trip_s: float = 0.0

    @pytest_asyncio.fixture
    async def ly(self, lockyard_connect: ConnectFactory) -> AsyncIterator[Connection]:
        connection = await lockyard_connect(unique_prefix())
        try:
            await self._widen_bounds_by_round_trips(connection)
            yield connection
        finally:
            try:
                await connection.store.purge()
            finally:
                await connection.close()

    @pytest_asyncio.fixture
    async def open_store(
        self, lockyard_connect: ConnectFactory
    ) -> AsyncIterator[Callable[[str], Awaitable[Connection]]]:
        opened: list[Connection] = []

        async def open_(prefix: str) -> Connection:
            connection = await lockyard_connect(prefix)
            opened.append(connection)
            return connection

        yield open_
        for connection in opened:
            await connection.store.purge()
            await connection.close()

    async def _widen_bounds_by_round_trips(self, connection: Connection) -> None:
        """Widen the bounds that contain a request by the round trips measured right now.

        A timed-out acquire may start its last attempt just before the deadline, and a waiter
        sees a release one request after it (one poll and one request where there is no release
        signal): both include a round trip, which takes under a millisecond on a quiet machine
        but tens to hundreds beside CPU-bound work. The class values stay the floor, so a fast
        backend is held to the spec's 100 ms. A short TTL must outlive the few round trips of
        a renewal (``hold`` renews every third of it), so it grows with them too, and the wait
        for its expiry with it, and so does the lease of the loss tests.
        """
        cls = type(self)
        slowest = max([await connection.ping() for _ in range(3)])
        self.round_trip_s = slowest
        self.timeout_slack_s = self.timeout_slack_for(slowest)
        self.handover_bound_s = self.handover_bound_for(slowest)
        self.short_ttl_s = max(cls.short_ttl_s, 15 * slowest)
        self.expiry_wait_s = self.short_ttl_s + (cls.expiry_wait_s - cls.short_ttl_s)
        # The loss margin (a tenth of the lease) must hold the loss signal's way to the block,
        # a few round trips' worth of hand-offs (the blocking facade's cancelled a DynamoDB
        # block after its 1 s lease had ended, on a loaded run).
        self.loss_ttl_s = max(cls.loss_ttl_s, LOSS_ROUND_TRIPS * 10 * slowest)

    def handover_bound_for(self, round_trip_s: float) -> float:
        """The class's hand-over bound (the backend's own wait: its release signal or poll)
        plus the round trips a hand-over contains: the release, a waiter's attempt in flight
        when it landed, and the attempt that takes the lock. Added, not the larger of the two:
        beside CPU hogs a 0.2 s round trip and a 0.25 s poll bound both happen in one
        hand-over."""
        slowest = max(round_trip_s, self.round_trip_s)
        return type(self).handover_bound_s + HANDOVER_ROUND_TRIPS * slowest

    @property
    def renewal_ttl_s(self) -> float:
        """The lease of a hold() that must renew through a few of them: short, with room for
        the event loop stalling after the round trips were measured (a lease of ``short_ttl_s``
        lapsed once beside two CPU hogs)."""
        return max(self.short_ttl_s, 1.0)

    def timeout_slack_for(self, round_trip_s: float) -> float:
        """How late a timeout may be raised: the class's slack plus the round trips in it (the
        attempt in flight at the deadline, and the call's own)."""
        slowest = max(round_trip_s, self.round_trip_s)
        return type(self).timeout_slack_s + TIMEOUT_ROUND_TRIPS * slowest

    @contextlib.asynccontextmanager
    async def watching_round_trips(self, connection: Connection) -> AsyncIterator[RoundTripWatch]:
        """Ping ``connection`` one round trip after another while the body runs.

        A bound that contains round trips is judged by the slowest one seen *while* the timed
        step ran: a spike of load after the start-of-test measurement (a moto request taking
        300 ms instead of 30 beside CPU-bound work) is then part of the bound, not a failure.
        Each ping is timed as the test sees it (a blocking facade's thread hand-offs included),
        and so is the pinger's own pause: a loop that wakes from it late was stalled.

        The pings run beside the step, so a pooled backend needs one more connection than the
        step alone: two concurrent pings open it first, or the step would pay for a new login
        the measured round trips do not contain (opening a PostgreSQL connection and preparing
        its statements took 0.4 s under load: a timed-out acquire was raised that late).
        """
        await asyncio.gather(connection.ping(), connection.ping())
        watch = RoundTripWatch(self.round_trip_s)

        async def ping_while_running() -> None:
            while True:
                started = loop_time()
                answered = await connection.ping()
                paused = loop_time()
                watch.slowest = max(watch.slowest, answered, paused - started)
                await asyncio.sleep(WATCH_PAUSE_S)
                # A loop that woke late was stalled (a loaded machine, another thread holding
                # the GIL): the timed step stalled as long, as if a round trip had taken that.
                watch.slowest = max(watch.slowest, loop_time() - paused - WATCH_PAUSE_S)

        pinging = asyncio.ensure_future(ping_while_running())
        try:
            yield watch
        finally:
            pinging.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pinging

    async def expire(self) -> None:
        """Wait until a key written with ``short_ttl_s`` has certainly expired."""
        await asyncio.sleep(self.expiry_wait_s)

    async def key_set_up_within_short_ttl(
        self, set_up: Callable[[str], Awaitable[object]], kind: str = "state"
    ) -> str:
        """Run ``set_up`` on a fresh key until it finishes before ``short_ttl_s`` runs out.

        Tests that write a short TTL and then need later writes to land *before* it expires
        race the clock on a loaded machine; a slow attempt proves nothing, so it is retried
        on a new key rather than judged. Returns the key of the attempt that was in time.
        """
        attempts = 5
        for _ in range(attempts):
            k = key(kind)
            started = loop_time()
            await set_up(k)
            if loop_time() - started < self.short_ttl_s * 0.8:
                return k
        raise AssertionError(
            f"{attempts} set-ups each took longer than short_ttl_s={self.short_ttl_s}s; "
            "raise short_ttl_s (and expiry_wait_s) for this backend"
        )
