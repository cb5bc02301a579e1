"""PostgreSQL locks: row leases judged by the database clock, waiters served first come first.

Each operation is one statement (:mod:`.sql.locks`). Release and break notify the head of the
queue through :mod:`.signals`; a head that waits in this client is woken directly instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Coroutine
from typing import Any

import asyncpg

from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import OperationRunner

from . import rows as r
from .pool import StatementPool
from .signals import ReleaseListener
from .sql import Statements


class PostgresLocks(DistributedLock):
    def __init__(
        self,
        runner: OperationRunner,
        db: StatementPool,
        statements: Statements,
        prefix: str,
        listener: ReleaseListener,
    ) -> None:
        super().__init__(runner, signals=listener)
        self._db = db
        self._q = statements
        self._prefix = prefix
        self._listener = listener
        #: Tags this client's queue entries: a release whose next owner waits here wakes it
        #: directly instead of notifying ourselves through the server.
        self._client_id = secrets.token_hex(8)

    # A waiting acquire's first attempt is the light ACQUIRE_UNQUEUED (docs/backends/postgres.md,
    # *The uncontended cycle*); the full ACQUIRE follows only when it is refused.
    takes_unwanted_locks_first = True

    async def _take_if_unwanted(self, name: str, owner: str, ttl_ms: int) -> int | None:
        reply = await self._db.fetchval(self._q.acquire_unqueued, self._prefix, name, owner, ttl_ms)
        return r.integer_or_none("acquire", reply, "a fencing token or no row")

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        reply = await self._db.fetchrow(
            self._q.acquire, self._prefix, name, owner, ttl_ms, wait_ms, self._client_id
        )
        row = r.row("acquire", reply, 2, "(fencing bigint, retry_after_ms bigint)")
        fencing = r.integer_or_none("acquire", row[0], "a fencing token or NULL")
        retry_after = r.integer_or_none("acquire", row[1], "a delay in ms or NULL")
        queued = fencing is None and wait_ms is not None
        return AcquireAttempt(fencing, retry_after, queued=queued)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        held = await self._db.fetchval(self._q.extend, self._prefix, name, owner, ttl_ms)
        return r.true_or_none("extend", held)

    def _hand_over(
        self, operation: str, name: str, query: str, *args: object
    ) -> Coroutine[Any, Any, bool]:
        """Run a release/break statement; wake the next owner here if it waits in this process.

        The wake comes before the connection goes back to the pool: asyncpg's release takes
        a loop iteration (a shielded task), and on a contended lock the hand-over is the path
        every waiter waits on (see docs/backends/postgres.md). Plain functions returning the
        pool's coroutine, here and in ``_release``: a release is half of every lock cycle,
        and each coroutine frame less is a microsecond less.
        """

        async def release_and_wake(connection: asyncpg.Connection) -> bool:
            released, next_owner = r.handed_over(operation, await connection.fetchrow(query, *args))
            if next_owner:
                self._listener.wake(name, next_owner)
            return released

        return self._db.run(release_and_wake, query)

    def _release(self, name: str, owner: str) -> Coroutine[Any, Any, bool]:
        channel, client = self._listener.channel, self._client_id
        return self._hand_over(
            "release", name, self._q.release, self._prefix, name, owner, channel, client
        )

    async def _is_held(self, name: str, owner: str) -> bool:
        held = await self._db.fetchval(self._q.is_held, self._prefix, name, owner)
        return r.boolean("is_held", held)

    def _break(self, name: str) -> Coroutine[Any, Any, bool]:
        channel, client = self._listener.channel, self._client_id
        return self._hand_over(
            "break_lock", name, self._q.break_, self._prefix, name, channel, client
        )

    async def _leave_queue(self, name: str, owner: str) -> None:
        channel, client = self._listener.channel, self._client_id
        reply = await self._db.fetchrow(
            self._q.leave_queue, self._prefix, name, owner, channel, client
        )
        _, head = r.handed_over("leave_queue", reply)
        if head:
            self._listener.wake(name, head)

    async def sweep_waiters(self) -> int:
        """Delete queue entries (of every prefix in the schema) whose waiter lease passed."""
        status = await self._run("sweep_waiters", self._db.execute(self._q.sweep_waiters))
        return r.deleted("sweep_waiters", status)

    async def _holder(self, name: str) -> LockInfo | None:
        reply = await self._db.fetchrow(self._q.holder, self._prefix, name)
        expected = "(owner text, fencing bigint, expires_in_ms bigint)"
        row = r.row_or_none("holder", reply, 3, expected)
        return None if row is None else _lock_info("holder", name, *row)

    async def _list_held(self) -> list[LockInfo]:
        found = await self._db.fetch(self._q.list_held, self._prefix)
        expected = "(name text, owner text, fencing bigint, expires_in_ms bigint)"
        return [
            _lock_info("list_held", *r.row("list_held", row, 4, expected))
            for row in r.rows("list_held", found)
        ]


def _lock_info(
    operation: str, name: object, owner: object, fencing: object, left: object
) -> LockInfo:
    return LockInfo(
        r.text(operation, name, "a lock name"),
        r.text(operation, owner, "an owner"),
        r.integer(operation, fencing, "a fencing token"),
        r.integer(operation, left, "the ms left"),
    )
