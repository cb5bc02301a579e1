"""Leader election on the lock: leading ``name`` is holding the lock ``election/<name>``.

There is one implementation of mutual exclusion per backend, the lock's: a candidate is a waiter
of the election's lock (served in arrival order where ``Guarantees.fifo_waiters``), the leader
is its holder, renewal and loss at the local lease deadline are ``hold()``'s, and the term is the
fencing token, so terms strictly increase. The candidate's identity travels in its owner token
(``<identity>#<32 hex digits>``), so any client reads who leads with one lock read.

The lock does not store when a term began: the new leader records it (identity, term, start)
in the store under ``lockyard:elections:election:<name>`` right after winning, in the
background, only ever replacing an older term's record; ``leader()`` reports ``since`` when
that record belongs to the current term. The contract is in docs/contract.md, section 4a.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from lockyard.durations import Duration, lock_ttl_to_ms
from lockyard.errors import LockExpiredError, StateError
from lockyard.locks import (
    ELECTION_LOCK_PREFIX,
    DistributedLock,
    LockGuard,
    LockHold,
    LockInfo,
    check_lock_name,
    check_owner_token,
)
from lockyard.observe import LockEventKind, Observation
from lockyard.store import StateStore

log = logging.getLogger("lockyard.elections")

#: client-go's default lease duration for leader election.
DEFAULT_LEADER_TTL_S = 15.0
#: The longest candidate identity, in bytes of UTF-8.
MAX_IDENTITY_LENGTH = 256
#: Where the leader of a term records when it began (see the module docstring).
RECORD_KEY_PREFIX = "lockyard:elections:election:"
#: The owner token of a candidate: its identity, ``#``, and 32 random hex digits.
_OWNER = re.compile(r"(?s)(.+)#[0-9a-f]{32}")

LeadershipChangeKind = Literal["elected", "resigned", "expired", "broken"]
_CHANGE_OF: dict[LockEventKind, LeadershipChangeKind] = {
    "acquired": "elected",
    "released": "resigned",
    "expired": "expired",
    "broken": "broken",
}


def election_lock_name(name: object) -> str:
    """The lock that ``name``'s leader holds; ``ValueError`` for a name no lock could have."""
    if not isinstance(name, str):
        raise TypeError(f"election name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("election name must not be empty")
    return check_lock_name(ELECTION_LOCK_PREFIX + name)


def candidate_owner(identity: object) -> str:
    """A fresh owner token carrying ``identity`` (1 to 256 bytes of UTF-8, no NUL or newline)."""
    if not isinstance(identity, str):
        raise TypeError(f"identity must be a str, got {type(identity).__name__}")
    if not identity or len(identity.encode("utf-8", "surrogatepass")) > MAX_IDENTITY_LENGTH:
        raise ValueError(f"identity must be 1 to {MAX_IDENTITY_LENGTH} bytes of UTF-8")
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("identity must be valid Unicode text (no lone surrogate)") from None
    return check_owner_token(f"{identity}#{secrets.token_hex(16)}")


def identity_of(owner: str) -> str:
    """The identity in a candidate's owner token (the whole token if it is not one)."""
    match = _OWNER.fullmatch(owner)
    return owner if match is None else match.group(1)


@dataclass(frozen=True, slots=True)
class Leader:
    """Who leads an election now. Times are wall-clock seconds since the epoch.

    ``term``: the leader's fencing token (strictly increasing across terms). ``since``: when
    the term began, as its leader recorded it (``None`` while that record is not written yet).
    ``expires``: when the lease ends unless the leader renews it, as read.
    """

    name: str
    identity: str
    term: int
    since: float | None
    expires: float


@dataclass(frozen=True, slots=True)
class LeadershipChange:
    """One change of an election: a leader ``elected``, or its term ended (``resigned``,
    ``expired``, ``broken``). ``at``: wall time when the observer learned it."""

    kind: LeadershipChangeKind
    name: str
    identity: str
    term: int
    at: float


class Leadership:
    """One term as leader, renewed in the background every ttl/3.

    ``lost`` is set when the term ends without ``resign()`` (expired, broken, not renewed by
    the local deadline: see ``DistributedLock.hold``); inside ``async with`` the block is then
    cancelled and raises ``LockLostError``. ``term`` is the fencing token to hand to whatever
    the leader writes, so a deposed leader's late writes can be refused.
    """

    def __init__(self, name: str, identity: str, hold: LockHold, guard: LockGuard) -> None:
        self.name = name
        self.identity = identity
        self.term = guard.fencing_token
        self.since = guard.renewed_at
        self.lost = guard.lost
        self.guard = guard
        self._hold = hold
        self._ended = False
        self._recorder: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Leadership(name={self.name!r}, identity={self.identity!r}, term={self.term})"

    @property
    def lease_deadline(self) -> float:
        """The local bound on this term's lease (lock clock, monotonic seconds)."""
        return self.guard.lease_deadline

    @property
    def is_leader(self) -> bool:
        """Whether this term is still on, as far as this process knows (no round trip)."""
        return not self._ended and not self.lost.is_set()

    async def resign(self) -> bool:
        """End the term now (the next candidate takes over at once); ``False`` if it had
        already ended (lost, or resigned before)."""
        if self._ended:
            return False
        self._ended = True
        await self._hold.stop_renewing()
        await self._stop_recording()
        if self.lost.is_set():
            return False
        try:
            await self.guard.release()
        except LockExpiredError:
            return False
        return True

    def _start_recording(self, store: StateStore) -> None:
        self._recorder = asyncio.create_task(
            self._record(store), name=f"lockyard-election-record:{self.name}"
        )

    async def _record(self, store: StateStore) -> None:
        """Write this term's record unless a newer term's is there already (best effort)."""
        key = RECORD_KEY_PREFIX + self.name
        value = json.dumps({"identity": self.identity, "term": self.term, "since": self.since})
        try:
            for _ in range(3):
                current = await store.get_versioned(key)
                if current is None:
                    if await store.check_and_set(key, value):
                        return
                    continue
                if _record_term(current[0]) >= self.term:
                    return
                if (await store.compare_and_swap(key, current[1], value)).ok:
                    return
        except StateError as exc:
            log.debug(
                "lockyard: election %r: recording term %d failed: %r", self.name, self.term, exc
            )

    async def _stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None and not recorder.done():
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder


def _record_term(value: str) -> int:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return int(json.loads(value)["term"])
    return 0


def _record_since(value: str | None, term: int) -> float | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError, TypeError, KeyError):
        record = json.loads(value)
        if int(record["term"]) == term:
            return float(record["since"])
    return None


class Campaign:
    """What ``ly.elections.campaign()`` returns: await it, or use it in ``async with``.

    ``leadership = await campaign``: waits to lead, then returns the term, renewed in the
    background until ``resign()`` (``lost`` is set if it ends otherwise). ``async with
    campaign as leadership:``: the same, and the block is cancelled when leadership is lost
    (it then raises ``LockLostError``); leaving the block resigns.
    """

    def __init__(
        self,
        elections: Elections,
        name: str,
        identity: str,
        ttl: Duration,
        timeout: Duration | None,
        auto_renew: bool,
    ) -> None:
        self._elections = elections
        self._name = name
        self._identity = identity
        self._lock_name = election_lock_name(name)
        self._owner = candidate_owner(identity)
        self._ttl_ms = lock_ttl_to_ms(ttl)
        self._timeout = timeout
        self._auto_renew = auto_renew
        self._leadership: Leadership | None = None

    async def _win(self, bind_block: bool) -> Leadership:
        elections = self._elections
        hold = LockHold(
            elections.locks,
            self._lock_name,
            self._ttl_ms,
            self._timeout,
            self._auto_renew,
            owner=self._owner,
            bind_block=bind_block,
        )
        guard = await hold.__aenter__()
        leadership = Leadership(self._name, self._identity, hold, guard)
        leadership._start_recording(elections.store)
        self._leadership = leadership
        return leadership

    def __await__(self) -> Generator[Any, None, Leadership]:
        return self._win(bind_block=False).__await__()

    async def __aenter__(self) -> Leadership:
        return await self._win(bind_block=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        leadership = self._leadership
        assert leadership is not None
        if leadership._ended and not leadership.lost.is_set():
            return  # resigned inside the block, while still leading
        # Lost (the hold turns its own cancellation of the block into LockLostError), or the
        # block is done: resign.
        leadership._ended = True
        await leadership._stop_recording()
        await leadership._hold.__aexit__(exc_type, exc, tb)


class ElectionObservation(Observation[LeadershipChange]):
    """``ly.elections.observe(name)``: :class:`LeadershipChange` items (see :mod:`.observe`)."""

    def __init__(
        self, locks: DistributedLock, name: str, poll_interval: Duration | None = None
    ) -> None:
        super().__init__(locks, name=election_lock_name(name), poll_interval=poll_interval)
        self._election = name

    def _event(self, kind: LockEventKind, info: LockInfo, at: float) -> LeadershipChange | None:
        change = _CHANGE_OF.get(kind)
        if change is None:
            return None  # a renewal is no change of leadership
        return LeadershipChange(
            change, self._election, identity_of(info.owner), info.fencing_token, at
        )


class Elections:
    """``ly.elections``: campaign, read and observe leader elections of one store."""

    def __init__(self, locks: DistributedLock, store: StateStore) -> None:
        self.locks = locks
        self.store = store

    def campaign(
        self,
        name: str,
        identity: str,
        ttl: Duration = DEFAULT_LEADER_TTL_S,
        *,
        timeout: Duration | None = None,
        auto_renew: bool = True,
    ) -> Campaign:
        """Stand for leader of ``name`` as ``identity``: wait (up to ``timeout``; ``None``: for
        ever; ``LockTimeoutError`` when it runs out) until elected; candidates are served in
        the order they stood where the backend queues waiters."""
        return Campaign(self, name, identity, ttl, timeout, auto_renew)

    async def leader(self, name: str) -> Leader | None:
        """Who leads ``name`` now, or ``None``: one lock read and one record read, together."""
        lock_name = election_lock_name(name)
        clock = self.locks.clock
        info, record = await asyncio.gather(
            self.locks.holder(lock_name), self.store.get(RECORD_KEY_PREFIX + name)
        )
        if info is None:
            return None
        since = _record_since(record, info.fencing_token)
        expires = clock.wall() + info.expires_in_ms / 1000
        return Leader(name, identity_of(info.owner), info.fencing_token, since, expires)

    def observe(self, name: str, *, poll_interval: Duration | None = None) -> ElectionObservation:
        """Every change of leadership of ``name``: the current leader first (``elected``),
        then each term's end and the next leader, in term order, never twice."""
        return ElectionObservation(self.locks, name, poll_interval)

    async def break_leadership(self, name: str) -> bool:
        """End the current term whoever leads (an operator's tool); the leader learns it lost
        at its next renewal."""
        return await self.locks.break_lock(election_lock_name(name))
