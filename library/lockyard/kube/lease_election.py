"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

A :class:`LeaseElector` is one candidate. :meth:`~LeaseElector.acquire` returns a :class:`Term`
once it leads; :meth:`~LeaseElector.keep` renews it until it is lost; :meth:`~LeaseElector.release`
hands it over at once. The rules are client-go's ``leaderelection`` package's, on the record of
:mod:`lockyard.kube.leader_record`:

- Every write is conditional: a replace carries the ``resourceVersion`` it read (or got back from
  its previous write), so of two candidates racing for an expired Lease one wins and the other
  gets 409. An attempt is at most one read and one conditional write.
- A candidate judges expiry on its OWN monotonic clock: a Lease is expired
  ``leaseDurationSeconds`` after the moment this candidate last saw the record change. No clock
  is compared with another machine's, so skew does not matter (only the clocks' rates).
- A leader renews every retry period. Its term is valid until the start of its last confirmed
  write plus the renew deadline, on its own monotonic clock; :meth:`Term.active` says whether
  that moment has passed, and :meth:`~LeaseElector.keep` declares the loss then. As the renew
  deadline is shorter than the lease duration, the leader stops before any candidate can see the
  Lease expire.
- A standby tries every retry period, and also exactly when the Lease it watches expires, so it
  takes over at most one retry period after the Lease could be taken.
- A new holder increments ``leaseTransitions``: the count is the term's number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard.kube.leader_record import ELECTION_KIND, KIND_LABEL, LeaderRecord, lease_body
from lockyard.kube.paths import leases_path

__all__ = ["ElectionTimings", "LeaseElector", "Term"]

logger = logging.getLogger(__name__)

#: The shortest request budget worth sending: below it the answer could not arrive in time.
_MIN_BUDGET_S = 0.05


@dataclass(frozen=True)
class ElectionTimings:
    """client-go's defaults: a 15 s lease, a 10 s renew deadline, a try every 2 s."""

    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if self.lease_duration_s < 1:
            raise ValueError("the lease duration must be at least 1 second")
        if not 0 < self.renew_deadline_s < self.lease_duration_s:
            # Otherwise a leader could still act after a standby saw its Lease expire.
            raise ValueError("the renew deadline must be shorter than the lease duration")
        if not 0 < self.retry_period_s < self.renew_deadline_s:
            raise ValueError("the retry period must be shorter than the renew deadline")


class Term:
    """One term of leadership: this candidate holds the Lease until :attr:`deadline`.

    ``number`` is the Lease's ``leaseTransitions`` when the term began (it grows with every term,
    whoever holds it). :attr:`deadline` is read from other threads (a watchdog): it is a float
    replaced whole, never updated in place.
    """

    def __init__(
        self,
        identity: str,
        number: int,
        acquire_time: float,
        confirmed_at: float,
        timings: ElectionTimings,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.number = number
        #: Wall-clock time the term began (the record's ``acquireTime``).
        self.acquire_time = acquire_time
        self._timings = timings
        self._clock = clock
        #: Monotonic time until which this candidate may act as leader.
        self.deadline = confirmed_at + timings.renew_deadline_s
        #: Why the term ended (``None`` while it lasts).
        self.lost_reason: str | None = None
        #: Set when the term ends, whatever the reason.
        self.lost = asyncio.Event()

    def confirm(self, write_started: float) -> None:
        """A renewal that began at ``write_started`` (monotonic) was confirmed."""
        self.deadline = max(self.deadline, write_started + self._timings.renew_deadline_s)

    def active(self) -> bool:
        """Still leading: not ended, and the renew deadline has not passed on this clock."""
        return self.lost_reason is None and self._clock.monotonic() < self.deadline

    def remaining(self) -> float:
        """Seconds left before the renew deadline (negative once passed)."""
        return self.deadline - self._clock.monotonic()

    def end(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
        self.lost.set()

    def __repr__(self) -> str:
        state = "active" if self.active() else f"ended: {self.lost_reason or 'deadline passed'}"
        return f"Term({self.identity!r}, number={self.number}, {state})"


class LeaseElector:
    """One candidate for the Lease ``namespace/name``; see the module docstring.

    ``api`` should be a client of its own (its own worker threads and connection pool), so a
    renewal never waits behind other work, and with ``throttled_attempts=1``: a throttled
    attempt simply fails and the next one comes one retry period later.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        timings: ElectionTimings | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not identity:
            raise ValueError("a candidate needs a non-empty identity")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings or ElectionTimings()
        self.labels = {KIND_LABEL: ELECTION_KIND, **(labels or {})}
        self._clock = clock
        self._path = leases_path(namespace, name)
        #: The record as last seen, and when (monotonic) it last changed.
        self._observed: LeaderRecord | None = None
        self._observed_at = 0.0
        #: The Lease as last read or written: the next conditional write's base.
        self._lease: dict[str, Any] | None = None
        self._last_error = ""

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- reading -----------------------------------------------------------------------------

    async def leader(self) -> LeaderRecord | None:
        """The record as the API serves it now (``None``: no Lease yet)."""
        lease = await self._read(self.timings.renew_deadline_s)
        return None if lease is None else LeaderRecord.from_spec(lease.get("spec"))

    # -- candidate ---------------------------------------------------------------------------

    async def acquire(self) -> Term:
        """Wait until this candidate leads; its term."""
        logger.info("%s: candidate for the Lease %s", self.identity, self.lease)
        while True:
            started = self._clock.monotonic()
            term = await self._try_acquire()
            if term is not None:
                logger.info(
                    "%s: became the leader of %s (term %d)", self.identity, self.lease, term.number
                )
                return term
            wake = started + self.timings.retry_period_s
            expires = self._expires_at()
            if expires is not None and expires > self._clock.monotonic():
                wake = min(wake, expires)  # take over the moment it can be taken
            await self._clock.sleep(max(0.0, wake - self._clock.monotonic()))

    async def _try_acquire(self) -> Term | None:
        """One attempt: read the Lease; if it is free or expired, take it (one conditional
        write). The new term, or ``None``."""
        budget = self.timings.renew_deadline_s
        try:
            lease = await self._read(budget)
        except (KubeApiError, TimeoutError) as exc:
            self._note("reading the Lease failed", exc)
            return None
        wall = self._clock.wall()
        if lease is None:
            record = LeaderRecord(self.identity, self.timings.lease_duration_s, wall, wall, 0)
            body = lease_body(self.namespace, self.name, record, labels=self.labels)
            return await self._write_new_term(record, body, create=True)
        current = LeaderRecord.from_spec(lease.get("spec"))
        self._observe(current)
        held = current.holder and current.holder != self.identity
        if held and not self._expired():
            return None
        if held:
            logger.info(
                "%s: the Lease %s of %s expired (not renewed for %ds on this clock): taking it",
                self.identity,
                self.lease,
                current.holder,
                current.lease_duration_s,
            )
        # Every term this candidate begins is a new one, even after a term of its own.
        record = LeaderRecord(
            self.identity, self.timings.lease_duration_s, wall, wall, current.transitions + 1
        )
        body = lease_body(self.namespace, self.name, record, labels=self.labels, previous=lease)
        return await self._write_new_term(record, body, create=False)

    async def _write_new_term(
        self, record: LeaderRecord, body: dict[str, Any], *, create: bool
    ) -> Term | None:
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(self.timings.renew_deadline_s):
                if create:
                    written = await self.api.request(
                        "POST", leases_path(self.namespace), body=body, timeout=self._timeout()
                    )
                else:
                    written = await self.api.request(
                        "PUT", self._path, body=body, timeout=self._timeout()
                    )
        except (KubeApiError, TimeoutError) as exc:
            # 409: another candidate wrote first (created it, or took it over).
            self._note("taking the Lease failed", exc)
            return None
        self._lease = written
        self._observe(record)
        return Term(
            self.identity, record.transitions, record.acquire_time or 0.0, started,
            self.timings, self._clock,
        )  # fmt: skip

    def _observe(self, record: LeaderRecord) -> None:
        # client-go restarts the expiry clock whenever the record differs from the last one seen.
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock.monotonic()

    def _expires_at(self) -> float | None:
        """When (monotonic) the Lease as last observed expires, if someone holds it."""
        record = self._observed
        if record is None or not record.holder:
            return None
        return self._observed_at + record.lease_duration_s

    def _expired(self) -> bool:
        expires = self._expires_at()
        return expires is None or expires <= self._clock.monotonic()

    # -- leader ------------------------------------------------------------------------------

    async def keep(self, term: Term) -> str:
        """Renew ``term`` every retry period until it is lost; why it was lost.

        The term ends at its renew deadline unless a renewal begun before then was confirmed:
        every request is cut at the deadline. A renewal that finds the Lease taken over or
        deleted ends it at once (a deleted Lease means someone broke the election).
        """
        next_at = self._clock.monotonic() + self.timings.retry_period_s
        while True:
            await self._clock.sleep(max(0.0, min(next_at, term.deadline) - self._clock.monotonic()))
            if term.lost_reason is not None:
                return term.lost_reason
            if not term.active():
                why = f"no renewal confirmed within {self.timings.renew_deadline_s:g}s"
                return self._lose(term, f"{why} ({self._last_error})" if self._last_error else why)
            next_at = self._clock.monotonic() + self.timings.retry_period_s
            lost = await self._renew(term)
            if lost is not None:
                return self._lose(term, lost)

    async def _renew(self, term: Term) -> str | None:
        """One renewal attempt; the reason the term is lost, or ``None`` (renewed, or worth
        trying again)."""
        if term.remaining() < _MIN_BUDGET_S:
            return None  # no answer could arrive in time: keep() declares the loss
        try:
            # Cut at the deadline: a renewal confirmed later would not count anyway.
            async with asyncio.timeout(term.remaining()):
                if self._lease is None:  # the last write met a conflict: read the Lease again
                    lost = await self._read_as_holder(term.remaining())
                    if lost is not None:
                        return lost
                wall = self._clock.wall()
                record = LeaderRecord(
                    self.identity, self.timings.lease_duration_s, term.acquire_time, wall,
                    term.number,
                )  # fmt: skip
                started = self._clock.monotonic()
                if started >= term.deadline:
                    return None  # too late to matter: keep() declares the loss
                await self._put_record(record, term.remaining())
        except KubeApiError as exc:
            if exc.not_found:
                return "the Lease was deleted"
            if exc.conflict:
                self._lease = None  # someone else wrote it: find out who, next attempt
            self._note("renewing the Lease failed", exc)
            return None
        except TimeoutError as exc:
            self._note("renewing the Lease timed out", exc)
            return None
        self._observe(record)
        if term.active():  # never revive a term whose deadline passed meanwhile
            term.confirm(started)
            self._last_error = ""
        return None

    def _lose(self, term: Term, reason: str) -> str:
        if term.lost_reason is None:
            logger.warning(
                "%s: lost the leadership of %s (term %d): %s",
                self.identity,
                self.lease,
                term.number,
                reason,
            )
        term.end(reason)
        return term.lost_reason or reason

    async def release(self, term: Term) -> bool:
        """Hand the Lease over now (client-go's ``ReleaseOnCancel``): no holder, a 1 s lease,
        the transitions kept. Only while the term is active; ``True`` if the write succeeded."""
        if not term.active() or self._lease is None:
            term.end("released")
            return False
        wall = self._clock.wall()
        record = LeaderRecord("", 1, wall, wall, term.number)
        term.end("released")
        try:
            async with asyncio.timeout(max(term.remaining(), _MIN_BUDGET_S)):
                if not await self._write_released(record):
                    return False
        except (KubeApiError, TimeoutError) as exc:
            self._note("releasing the Lease failed", exc)
            return False
        self._observe(record)
        logger.info("%s: released %s (term %d)", self.identity, self.lease, term.number)
        return True

    async def _write_released(self, record: LeaderRecord) -> bool:
        """Write the released ``record``; ``False`` if the Lease is no longer this candidate's.

        A renewal cancelled mid-request (``keep()`` cancelled, then ``release()``) may still
        have landed: the API applied it, but its answer, and so the new ``resourceVersion``,
        never came back. The release then meets a conflict with this candidate's own write, so
        on a conflict it reads the Lease once and releases it if this candidate still holds it.
        """
        try:
            await self._put_record(record)
            return True
        except KubeApiError as exc:
            if not exc.conflict:
                raise
        if await self._read_as_holder(self.timings.renew_deadline_s) is not None:
            return False  # deleted or taken over meanwhile: nothing of ours to release
        await self._put_record(record)
        return True

    async def _read_as_holder(self, budget: float) -> str | None:
        """Read the Lease again (after a conflict): ``None`` if this candidate still holds it,
        kept as the next write's base; otherwise why it does not."""
        lease = await self._read(budget)
        if lease is None:
            return "the Lease was deleted"
        current = LeaderRecord.from_spec(lease.get("spec"))
        self._observe(current)
        if current.holder != self.identity:
            return f"the Lease is held by {current.holder or 'nobody'} now"
        self._lease = lease
        return None

    async def _put_record(self, record: LeaderRecord, budget: float | None = None) -> None:
        """Replace the Lease with ``record``, conditional on the ``resourceVersion`` last seen."""
        body = lease_body(
            self.namespace, self.name, record, labels=self.labels, previous=self._lease
        )
        self._lease = await self.api.request(
            "PUT", self._path, body=body, timeout=self._timeout(budget)
        )

    # -- requests ----------------------------------------------------------------------------

    async def _read(self, budget: float) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(max(budget, _MIN_BUDGET_S)):
                return await self.api.request("GET", self._path, timeout=self._timeout(budget))
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise

    def _timeout(self, budget: float | None = None) -> tuple[float, float]:
        """(connect, read) seconds for one request: never past the renew deadline."""
        limit = max(budget if budget is not None else self.timings.renew_deadline_s, _MIN_BUDGET_S)
        return (min(limit, 5.0), limit)

    def _note(self, what: str, exc: BaseException) -> None:
        detail = str(exc) or type(exc).__name__
        self._last_error = f"{what}: {detail}"
        logger.debug("%s: %s: %s", self.identity, self.lease, self._last_error)
