"""Counting semaphores: ``ly.semaphores`` hands out up to ``limit`` permits per name.

Each permit is its own lease, with its own owner token and fencing token, extended and released
on its own; a permit whose holder stops renewing expires and is reclaimed by the next attempt,
without anyone's help. Waiters are served first come, first served where the backend queues
(``Guarantees.fifo_waiters``), with the same hand-off as locks: a release signals the waiter
whose turn it is. The limit is fixed by a name's first use; an acquisition with another limit
raises :class:`~lockyard.errors.SemaphoreLimitError`. How it works: :mod:`lockyard.permits`.
"""

from __future__ import annotations

from lockyard.durations import Duration, lock_ttl_to_ms, timeout_to_seconds
from lockyard.errors import LockTimeoutError, SemaphoreLimitError
from lockyard.holding import LeaseHold
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S, check_lock_name, new_owner_token
from lockyard.permits import HolderInfo, PermitGuard, PermitTable

#: The largest limit of a semaphore (a DynamoDB item holds every permit of a name).
MAX_SEMAPHORE_LIMIT = 1000


def check_limit(limit: object) -> int:
    """``limit`` if it is a valid semaphore limit: an int from 1 to 1000."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_SEMAPHORE_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_SEMAPHORE_LIMIT}, got {limit}")
    return limit


class Permit(PermitGuard):
    """One permit of a semaphore; ``limit`` is the semaphore's."""

    __slots__ = ("limit",)
    what = "semaphore permit"
    _kind = "semaphore"

    def __init__(
        self,
        table: PermitTable,
        name: str,
        owner: str,
        fencing_token: int,
        lease_ms: int,
        started: float,
        limit: int,
    ) -> None:
        super().__init__(table, name, owner, fencing_token, lease_ms, started, 1)
        self.limit = limit


class Semaphores:
    """Named counting semaphores of one store (``ly.semaphores``)."""

    def __init__(self, table: PermitTable) -> None:
        self.table = table

    async def try_acquire(self, name: str, limit: int, ttl: Duration) -> Permit | None:
        """One attempt: a permit, or ``None`` if all ``limit`` permits are held.

        Like a lock's ``try_acquire`` it takes a free permit whoever waits.
        """
        name, limit, ms = check_lock_name(name), check_limit(limit), lock_ttl_to_ms(ttl)
        return await self._take(name, limit, ms, None)

    async def acquire(self, name: str, limit: int, ttl: Duration, timeout: Duration) -> Permit:
        """Wait up to ``timeout`` for a permit (0: one attempt); ``LockTimeoutError`` after.

        With a timeout above 0 the caller queues (on backends that queue) and gets a permit in
        its turn.
        """
        name, limit, ms = check_lock_name(name), check_limit(limit), lock_ttl_to_ms(ttl)
        wait_s = timeout_to_seconds(timeout)
        permit = await self._take(name, limit, ms, wait_s if wait_s > 0 else None)
        if permit is None:
            raise self._timed_out(name, limit, wait_s)
        return permit

    def hold(
        self,
        name: str,
        limit: int,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
    ) -> SemaphoreHold:
        """``async with semaphores.hold(...) as permit:`` acquire, renew every ttl/3, and cancel
        the block (``LockLostError`` at its exit) if the permit is lost."""
        name, limit, ms = check_lock_name(name), check_limit(limit), lock_ttl_to_ms(ttl)
        timeout_to_seconds(timeout)
        return SemaphoreHold(self, name, limit, ms, timeout, auto_renew)

    async def list_held(self) -> list[HolderInfo]:
        """Every live permit of every semaphore of this store (order unspecified)."""
        return await self.table.list_held()

    async def break_permit(self, name: str, owner: str) -> bool:
        """Take the permit of ``owner`` away (its holder learns at its next renewal or release);
        ``True`` if it was live. Waiters whose turn it now is are signalled."""
        table = self.table
        return await table._run("break", table._release(check_lock_name(name), owner))

    async def _take(self, name: str, limit: int, ms: int, wait_s: float | None) -> Permit | None:
        owner = new_owner_token()

        def conflict(first: int) -> SemaphoreLimitError:
            return SemaphoreLimitError(
                f"semaphore {name!r} was first used with limit {first}, not {limit}: a "
                "semaphore's limit is fixed by its first use (use one limit everywhere, or "
                "another name)"
            )

        attempt, started = await self.table.take(
            name,
            owner,
            1,
            limit,
            ms,
            wait_s,
            False,
            lambda: self._timed_out(name, limit, wait_s or 0),
            conflict,
        )
        if attempt.fencing_token is None:
            return None
        permit = Permit(self.table, name, owner, attempt.fencing_token, ms, started, limit)
        self.table.notify("permit_acquired", permit)
        return permit

    @staticmethod
    def _timed_out(name: str, limit: int, wait_s: float) -> LockTimeoutError:
        return LockTimeoutError(
            f"semaphore {name!r}: all {limit} permits were still held after waiting {wait_s:g}s"
        )


class SemaphoreHold(LeaseHold[Permit]):
    """The context manager behind ``Semaphores.hold``."""

    what = "semaphore permit"

    def __init__(
        self,
        semaphores: Semaphores,
        name: str,
        limit: int,
        ttl_ms: int,
        timeout: Duration,
        auto_renew: bool,
    ) -> None:
        super().__init__(semaphores.table.clock, ttl_ms, auto_renew)
        self._semaphores = semaphores
        self._name = name
        self._limit = limit
        self._timeout = timeout

    async def _acquire(self) -> Permit:
        return await self._semaphores.acquire(
            self._name, self._limit, self._ttl_ms / 1000, self._timeout
        )
