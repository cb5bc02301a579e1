"""PostgreSQL fenced writes: one statement that locks the guard's lease row ``FOR SHARE`` and
writes only if it is held (:mod:`.sql.fenced` says why the row lock makes it atomic)."""

from __future__ import annotations

from asyncpg import Record

from lockyard.errors import SerializationError
from lockyard.fenced_writes import Fence, FencedWrites, fence_lost
from lockyard.store import COUNTER_RULE, CasResult

from . import rows as r
from .pool import StatementPool
from .sql.fenced import FencedStatements


class PostgresFencedWrites(FencedWrites):
    def __init__(self, db: StatementPool, statements: FencedStatements, prefix: str) -> None:
        self._db = db
        self._q = statements.by_kind
        self._prefix = prefix

    async def _row(
        self, fence: Fence, operation: str, columns: int, key: str, *args: object
    ) -> Record | None:
        """The statement's row (``held`` first, then ``columns - 1`` of the operation's), after
        raising ``FenceLostError`` when the guard's lease is gone."""
        if fence.kind == "lock":
            statement = self._q["lock", operation]
            fence_args: tuple[str, ...] = (fence.name, fence.owner)
        else:
            statement = self._q["permit", operation]
            fence_args = (fence.name, fence.owner, fence.kind)
        reply = await self._db.fetchrow(statement, self._prefix, *args, *fence_args)
        if reply is None and operation == "compare_and_swap":
            return None  # held, and the key is missing or expired
        row = r.row(f"fenced {operation}", reply, columns, f"{columns} columns, held first")
        if not r.boolean(f"fenced {operation}", row[0]):
            raise fence_lost(fence, operation, key)
        return row

    async def _held_row(
        self, fence: Fence, operation: str, columns: int, key: str, *args: object
    ) -> Record:
        row = await self._row(fence, operation, columns, key, *args)
        if row is None:
            raise r.unexpected(f"fenced {operation}", "one row", None)
        return row

    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        row = await self._held_row(fence, "check_and_set", 2, key, key, value, ttl_ms)
        return r.boolean("fenced check_and_set", row[1])

    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None:
        await self._held_row(fence, "set", 1, key, key, value, ttl_ms)

    async def delete(self, fence: Fence, key: str) -> bool:
        row = await self._held_row(fence, "delete", 2, key, key)
        return r.boolean("fenced delete", row[1])

    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int:
        row = await self._held_row(fence, "increment", 2, key, key, delta, ttl_ms)
        value = r.integer_or_none("fenced increment", row[1], "a counter or NULL")
        if value is None:
            raise SerializationError(
                f"increment on {key!r} by {delta}: the current value is not a counter, or the "
                f"result would leave the signed 64-bit range; nothing was changed: {COUNTER_RULE}"
            )
        return value

    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        row = await self._row(
            fence, "compare_and_swap", 4, key, key, expected_version, new_value, ttl_ms
        )
        if row is None:  # held, and the key is missing or expired
            return CasResult(ok=False, current_value=None, current_version=0)
        ok, value, version = r.swapped("fenced compare_and_swap", row, offset=1)
        return CasResult(ok=ok, current_value=value, current_version=version)

    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        await self._held_row(fence, "index_add", 1, key, index, key, at_ms)

    async def index_remove(self, fence: Fence, index: str, key: str) -> None:
        await self._held_row(fence, "index_remove", 1, key, index, key)
