"""PostgreSQL fenced writes: one statement that locks the guard's lease row ``FOR SHARE`` and
writes only if it is held (:mod:`.sql.fenced` says why the row lock makes it atomic)."""

from __future__ import annotations

from typing import Any

from lockyard.errors import SerializationError
from lockyard.fenced_writes import Fence, FencedWrites, fence_lost
from lockyard.store import COUNTER_RULE, CasResult

from .pool import StatementPool
from .sql.fenced import FencedStatements


class PostgresFencedWrites(FencedWrites):
    def __init__(self, db: StatementPool, statements: FencedStatements, prefix: str) -> None:
        self._db = db
        self._q = statements.by_kind
        self._prefix = prefix

    async def _row(self, fence: Fence, operation: str, key: str, *args: object) -> Any:
        if fence.kind == "lock":
            statement = self._q["lock", operation]
            fence_args: tuple[str, ...] = (fence.name, fence.owner)
        else:
            statement = self._q["permit", operation]
            fence_args = (fence.name, fence.owner, fence.kind)
        row = await self._db.fetchrow(statement, self._prefix, *args, *fence_args)
        if row is not None and not row[0]:
            raise fence_lost(fence, operation, key)
        return row

    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        row = await self._row(fence, "check_and_set", key, key, value, ttl_ms)
        return bool(row[1])

    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None:
        await self._row(fence, "set", key, key, value, ttl_ms)

    async def delete(self, fence: Fence, key: str) -> bool:
        row = await self._row(fence, "delete", key, key)
        return row[1] is True

    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int:
        row = await self._row(fence, "increment", key, key, delta, ttl_ms)
        if row[1] is None:
            raise SerializationError(
                f"increment on {key!r} by {delta}: the current value is not a counter, or the "
                f"result would leave the signed 64-bit range; nothing was changed: {COUNTER_RULE}"
            )
        value: int = row[1]
        return value

    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        row = await self._row(
            fence, "compare_and_swap", key, key, expected_version, new_value, ttl_ms
        )
        if row is None:  # held, and the key is missing or expired
            return CasResult(ok=False, current_value=None, current_version=0)
        return CasResult(ok=row[1], current_value=row[2], current_version=row[3])

    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        await self._row(fence, "index_add", key, index, key, at_ms)

    async def index_remove(self, fence: Fence, index: str, key: str) -> None:
        await self._row(fence, "index_remove", key, index, key)
