"""PostgreSQL locks: row leases judged by the database clock, waiters served first come first.

Each operation is one statement (:mod:`.sql.locks`). Release and break notify the head of the
queue through :mod:`.signals`; a head that waits in this client is woken directly instead.
"""

from __future__ import annotations

import secrets

import asyncpg

from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import OperationRunner

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

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        row = await self._db.fetchrow(
            self._q.acquire, self._prefix, name, owner, ttl_ms, wait_ms, self._client_id
        )
        fencing = row[0]
        return AcquireAttempt(fencing, row[1], queued=fencing is None and wait_ms is not None)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        held = await self._db.fetchval(self._q.extend, self._prefix, name, owner, ttl_ms)
        return held is not None

    async def _hand_over(self, name: str, query: str, *args: object) -> bool:
        """Run a release/break statement; wake the next owner here if it waits in this process.

        The wake comes before the connection goes back to the pool: asyncpg's release takes
        a loop iteration (a shielded task), and on a contended lock the hand-over is the path
        every waiter waits on (see docs/backends/postgres.md).
        """

        async def release_and_wake(connection: asyncpg.Connection) -> bool:
            released, next_owner = await connection.fetchrow(query, *args)
            if next_owner:
                self._listener.wake(name, next_owner)
            return bool(released > 0)

        return await self._db.run(release_and_wake)

    async def _release(self, name: str, owner: str) -> bool:
        channel, client = self._listener.channel, self._client_id
        return await self._hand_over(
            name, self._q.release, self._prefix, name, owner, channel, client
        )

    async def _is_held(self, name: str, owner: str) -> bool:
        held: bool = await self._db.fetchval(self._q.is_held, self._prefix, name, owner)
        return held

    async def _break(self, name: str) -> bool:
        channel, client = self._listener.channel, self._client_id
        return await self._hand_over(name, self._q.break_, self._prefix, name, channel, client)

    async def _leave_queue(self, name: str, owner: str) -> None:
        channel, client = self._listener.channel, self._client_id
        head = await self._db.fetchval(
            self._q.leave_queue, self._prefix, name, owner, channel, client
        )
        if head:
            self._listener.wake(name, head)

    async def sweep_waiters(self) -> int:
        """Delete queue entries (of every prefix in the schema) whose waiter lease passed."""
        status = await self._run("sweep_waiters", self._db.execute(self._q.sweep_waiters))
        return int(status.rsplit(" ", 1)[-1])

    async def _holder(self, name: str) -> LockInfo | None:
        row = await self._db.fetchrow(self._q.holder, self._prefix, name)
        return None if row is None else LockInfo(name, row[0], row[1], row[2])

    async def _list_held(self) -> list[LockInfo]:
        rows = await self._db.fetch(self._q.list_held, self._prefix)
        return [LockInfo(row[0], row[1], row[2], row[3]) for row in rows]
