"""Read-write locks: ``ly.rwlocks`` gives any number of readers or one writer per name.

Each holder, reader or writer, is its own lease with its own owner token and fencing token.
The policy is writer-preferring and first come, first served (where the backend queues): a
reader is let in only when no writer holds the lock **and** no writer waits ahead of it, so a
stream of readers cannot starve a writer; a writer is let in when nobody holds the lock and it
is first in the queue, so it waits at most for the holders and waiters ahead of it. A release
signals the waiters that now fit, in order: the writer at the head, or every reader up to the
next writer. ``try_acquire_read`` counts waiting writers too (a reader never overtakes one);
``try_acquire_write`` takes a free lock whoever waits, as a lock's ``try_acquire`` does.

Upgrading (read to write) and downgrading are not supported: a task that holds a lock and asks
for it in the other mode, or waits to read it again, gets
:class:`~lockyard.errors.LockUpgradeError` at once, because the second request would wait for
the first. Release, then acquire the other mode (and re-check what was read). How it works:
:mod:`lockyard.permits` (a reader weighs 1, a writer the whole capacity).
"""

from __future__ import annotations

import weakref

from lockyard._callers import current_caller
from lockyard.durations import Duration, lock_ttl_to_ms, timeout_to_seconds
from lockyard.errors import LockTimeoutError, LockUpgradeError, StateError
from lockyard.holding import LeaseHold
from lockyard.locks import DEFAULT_HOLD_TIMEOUT_S, check_lock_name, new_owner_token
from lockyard.permits import RW_CAPACITY, HolderInfo, PermitGuard, PermitTable

READ = "read"
WRITE = "write"
_WEIGHTS = {READ: 1, WRITE: RW_CAPACITY}


class ReadWriteGuard(PermitGuard):
    """One hold of a read-write lock: ``mode`` is ``"read"`` or ``"write"``."""

    __slots__ = ("mode", "task")

    def __init__(
        self,
        table: PermitTable,
        name: str,
        owner: str,
        fencing_token: int,
        lease_ms: int,
        started: float,
        mode: str,
    ) -> None:
        super().__init__(table, name, owner, fencing_token, lease_ms, started, _WEIGHTS[mode])
        self.mode = mode
        #: Who acquired it (the task; under lockyard.sync, the thread): asking again is refused.
        self.task = current_caller()

    @property
    def kind(self) -> str:
        """``rwlock-read`` or ``rwlock-write``: the ``lockyard.dev/kind`` of its Lease."""
        return f"rwlock-{self.mode}"

    def _describe(self) -> str:
        return f"{self.mode} lock of {self.name!r} (fencing token {self.fencing_token})"

    async def upgrade(self) -> None:
        """Not supported: always raises :class:`LockUpgradeError` (see the module docstring)."""
        raise _upgrade_error(self.name, self.mode, WRITE if self.mode == READ else READ)


def _upgrade_error(name: str, held: str, wanted: str) -> LockUpgradeError:
    doing = {READ: "reading", WRITE: "writing"}
    return LockUpgradeError(
        f"read-write lock {name!r}: this task holds it for {doing[held]} and asked for it for "
        f"{doing[wanted]}; "
        "upgrading and downgrading are not supported (the request would wait for the task "
        f"itself): release the {held} lock, then acquire the {wanted} lock and re-check what "
        "was read"
    )


class ReadWriteLocks:
    """Named read-write locks of one store (``ly.rwlocks``)."""

    def __init__(self, table: PermitTable) -> None:
        self.table = table
        self._held_here: dict[str, weakref.WeakSet[ReadWriteGuard]] = {}

    async def try_acquire_read(self, name: str, ttl: Duration) -> ReadWriteGuard | None:
        """One attempt; ``None`` if a writer holds the lock or waits for it."""
        return await self._take(name, READ, ttl, None)

    async def try_acquire_write(self, name: str, ttl: Duration) -> ReadWriteGuard | None:
        """One attempt; ``None`` if anyone holds the lock (it takes a free lock whoever waits)."""
        return await self._take(name, WRITE, ttl, None)

    async def acquire_read(self, name: str, ttl: Duration, timeout: Duration) -> ReadWriteGuard:
        """Wait up to ``timeout`` to read (0: one attempt); ``LockTimeoutError`` after."""
        return await self._acquire(name, READ, ttl, timeout)

    async def acquire_write(self, name: str, ttl: Duration, timeout: Duration) -> ReadWriteGuard:
        """Wait up to ``timeout`` to write (0: one attempt); ``LockTimeoutError`` after."""
        return await self._acquire(name, WRITE, ttl, timeout)

    def hold_read(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
    ) -> ReadWriteHold:
        """``async with rwlocks.hold_read(...) as guard:`` acquire, renew every ttl/3, and cancel
        the block (``LockLostError`` at its exit) if the lock is lost."""
        return self._hold(name, READ, ttl, timeout, auto_renew)

    def hold_write(
        self,
        name: str,
        ttl: Duration,
        timeout: Duration = DEFAULT_HOLD_TIMEOUT_S,
        auto_renew: bool = True,
    ) -> ReadWriteHold:
        """As :meth:`hold_read`, for writing."""
        return self._hold(name, WRITE, ttl, timeout, auto_renew)

    async def list_held(self) -> list[HolderInfo]:
        """Every live holder of every read-write lock of this store; ``weight`` is 1 for a
        reader and :data:`~lockyard.permits.RW_CAPACITY` for a writer."""
        return await self.table.list_held()

    async def break_holder(self, name: str, owner: str) -> bool:
        """Take ``owner``'s hold away (it learns at its next renewal or release); ``True`` if
        it was live. Waiters whose turn it now is are signalled."""
        table = self.table
        return await table._run("break", table._release(check_lock_name(name), owner))

    # -- internals -------------------------------------------------------------------------
    def _hold(
        self, name: str, mode: str, ttl: Duration, timeout: Duration, auto_renew: bool
    ) -> ReadWriteHold:
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
        timeout_to_seconds(timeout)
        return ReadWriteHold(self, name, mode, ms, timeout, auto_renew)

    async def _acquire(
        self, name: str, mode: str, ttl: Duration, timeout: Duration
    ) -> ReadWriteGuard:
        wait_s = timeout_to_seconds(timeout)
        guard = await self._take(name, mode, ttl, wait_s if wait_s > 0 else None)
        if guard is None:
            raise self._timed_out(name, mode, wait_s)
        return guard

    def _refuse_reentry(self, name: str, mode: str, waiting: bool) -> None:
        """Refuse the other mode to a caller that holds ``name`` (upgrade, downgrade), and a
        wait for reading to one that reads already (a queued writer would make it wait for
        itself); a one-shot read beside a read is harmless."""
        task = current_caller()
        now = self.table.clock.monotonic()
        for held in self._held_here.get(name, ()):
            if (
                held.task is task
                and not held.released
                and not held.lost.is_set()
                and held.lease_deadline > now
                and (held.mode != mode or waiting)
            ):
                raise _upgrade_error(name, held.mode, mode)

    async def _take(
        self, name: str, mode: str, ttl: Duration, wait_s: float | None
    ) -> ReadWriteGuard | None:
        name, ms = check_lock_name(name), lock_ttl_to_ms(ttl)
        self._refuse_reentry(name, mode, wait_s is not None)
        owner = new_owner_token()

        def conflict(first: int) -> StateError:  # only a foreign writer of the table can cause it
            return StateError(f"read-write lock {name!r} has a capacity of {first}, not ours")

        attempt, started = await self.table.take(
            name,
            owner,
            _WEIGHTS[mode],
            RW_CAPACITY,
            ms,
            wait_s,
            mode == READ,
            lambda: self._timed_out(name, mode, wait_s or 0),
            conflict,
        )
        if attempt.fencing_token is None:
            return None
        guard = ReadWriteGuard(self.table, name, owner, attempt.fencing_token, ms, started, mode)
        self._held_here.setdefault(name, weakref.WeakSet()).add(guard)
        self.table.notify("permit_acquired", guard)
        return guard

    @staticmethod
    def _timed_out(name: str, mode: str, wait_s: float) -> LockTimeoutError:
        other = "a writer holds or waits for it" if mode == READ else "it is held"
        return LockTimeoutError(
            f"read-write lock {name!r}: could not {mode} after waiting {wait_s:g}s ({other})"
        )


class ReadWriteHold(LeaseHold[ReadWriteGuard]):
    """The context manager behind ``ReadWriteLocks.hold_read`` and ``hold_write``."""

    def __init__(
        self,
        rwlocks: ReadWriteLocks,
        name: str,
        mode: str,
        ttl_ms: int,
        timeout: Duration,
        auto_renew: bool,
    ) -> None:
        super().__init__(rwlocks.table.clock, ttl_ms, auto_renew)
        self._rwlocks = rwlocks
        self._name = name
        self._mode = mode
        self._timeout = timeout
        self.what = f"{mode} lock"

    async def _acquire(self) -> ReadWriteGuard:
        return await self._rwlocks._acquire(
            self._name, self._mode, self._ttl_ms / 1000, self._timeout
        )
