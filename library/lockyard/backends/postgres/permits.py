"""PostgreSQL permit tables (semaphores, read-write locks): one statement per operation.

The statements and functions, and why attempts are functions, are in :mod:`.sql.permits`.
Releases notify the waiters that now fit through the backend's LISTEN connection
(:mod:`.signals`); those waiting in this client are woken directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from lockyard.operations import OperationRunner
from lockyard.permits import HolderInfo, PermitAttempt, PermitTable
from lockyard.rwlocks import ReadWriteLocks
from lockyard.semaphores import Semaphores

from . import rows as r
from .pool import StatementPool
from .signals import ReleaseListener
from .sql.permits import PermitStatements


class PostgresPermits(PermitTable):
    def __init__(
        self,
        runner: OperationRunner,
        space: str,
        db: StatementPool,
        statements: PermitStatements,
        prefix: str,
        listener: ReleaseListener,
    ) -> None:
        super().__init__(runner, space, signals=listener)
        self._db = db
        self._q = statements
        self._prefix = prefix
        self._listener = listener
        #: Tags this client's queue entries (a waiter here is woken without a NOTIFY).
        self._client_id = secrets.token_hex(8)

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
        reply = await self._db.fetchrow(
            self._q.acquire,
            self._prefix,
            self.space,
            name,
            owner,
            weight,
            limit,
            ttl_ms,
            wait_ms,
            count_queue,
            self._client_id,
        )
        expected = "(fencing bigint, retry_after_ms bigint, limit_conflict bigint)"
        fencing, retry_after, conflict = (
            r.integer_or_none("permit_acquire", value)
            for value in r.row("permit_acquire", reply, 3, expected)
        )
        if conflict is not None:
            return PermitAttempt(None, limit_conflict=conflict)
        if fencing is not None:
            return PermitAttempt(fencing)
        return PermitAttempt(None, retry_after, queued=wait_ms is not None)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        held = await self._db.fetchval(
            self._q.extend, self._prefix, self.space, name, owner, ttl_ms
        )
        return r.true_or_none("permit_extend", held)

    async def _is_held(self, name: str, owner: str) -> bool:
        held = await self._db.fetchval(self._q.is_held, self._prefix, self.space, name, owner)
        return r.boolean("permit_is_held", held)

    def _wake(self, name: str, owners: Sequence[str]) -> None:
        for owner in owners:
            self._listener.wake(self.signal_name(name), owner)

    def _signal_args(self, name: str, owner: str) -> tuple[str, ...]:
        channel = self._listener.channel
        return (
            self._prefix,
            self.space,
            name,
            owner,
            channel,
            self.signal_name(name),
            self._client_id,
        )

    async def _release(self, name: str, owner: str) -> bool:
        reply = await self._db.fetchrow(self._q.release, *self._signal_args(name, owner))
        released, wake = r.row("permit_release", reply, 2, "(released boolean, wake text[])")
        self._wake(name, r.texts_or_none("permit_release", wake))
        return r.boolean("permit_release", released)

    async def _leave_queue(self, name: str, owner: str) -> None:
        reply = await self._db.fetchval(self._q.leave_queue, *self._signal_args(name, owner))
        self._wake(name, r.texts_or_none("permit_leave_queue", reply))

    async def _list_held(self) -> list[HolderInfo]:
        found = await self._db.fetch(self._q.list_held, self._prefix, self.space)
        return [_holder(row) for row in r.rows("list_held", found)]

    async def sweep(self) -> int:
        """Delete expired holders and waiters (of every prefix); the background sweep's job."""
        status = await self._run("sweep_permits", self._db.execute(self._q.sweep))
        return r.deleted("sweep_permits", status)


def _holder(record: object) -> HolderInfo:
    expected = "(name, owner, fencing, expires_in_ms, weight, limit)"
    name, owner, fencing, left, weight, limit = r.row("list_held", record, 6, expected)
    return HolderInfo(
        r.text("list_held", name, "a name"),
        r.text("list_held", owner, "an owner"),
        r.integer("list_held", fencing, "a fencing token"),
        r.integer("list_held", left, "the ms left"),
        r.integer("list_held", weight, "a weight"),
        r.integer("list_held", limit, "a limit"),
    )


def permit_managers(
    runner: OperationRunner,
    db: StatementPool,
    statements: PermitStatements,
    prefix: str,
    listener: ReleaseListener,
) -> tuple[Semaphores, ReadWriteLocks]:
    """``ly.semaphores`` and ``ly.rwlocks`` of a PostgreSQL backend."""

    def table(space: str) -> PostgresPermits:
        return PostgresPermits(runner, space, db, statements, prefix, listener)

    return Semaphores(table("semaphore")), ReadWriteLocks(table("rwlock"))
