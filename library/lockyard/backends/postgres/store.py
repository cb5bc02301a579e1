"""The PostgreSQL state store: each operation one prepared statement (:mod:`.sql.store`).

Expired rows behave as missing inside every statement; :meth:`PostgresStateStore.sweep_expired`
only reclaims their space, in batches, from the backend's background sweep.
"""

from __future__ import annotations

from lockyard.errors import SerializationError
from lockyard.operations import OperationRunner
from lockyard.store import COUNTER_RULE, CasResult, StateStore

from .pool import StatementPool
from .sql import Statements

#: The background sweep of expired rows: rows per statement, and the most statements per round
#: (the rest waits for the next round).
SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 20


def prefix_successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``.

    In code point order (the C collation's byte order under UTF-8): drop trailing U+10FFFF,
    then bump the last character, stepping over the surrogates PostgreSQL cannot store.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        raise ValueError("a scan prefix needs a character below U+10FFFF")
    bumped = ord(stripped[-1]) + 1
    if 0xD800 <= bumped <= 0xDFFF:
        bumped = 0xE000
    return stripped[:-1] + chr(bumped)


class PostgresStateStore(StateStore):
    def __init__(
        self, runner: OperationRunner, db: StatementPool, statements: Statements, prefix: str
    ) -> None:
        super().__init__(runner)
        self._db = db
        self._q = statements
        self._prefix = prefix

    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        created = await self._db.fetchval(self._q.check_and_set, self._prefix, key, value, ttl_ms)
        return created is not None

    async def _get(self, key: str) -> str | None:
        value: str | None = await self._db.fetchval(self._q.get, self._prefix, key)
        return value

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        row = await self._db.fetchrow(self._q.get_versioned, self._prefix, key)
        return None if row is None else (row[0], row[1])

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        await self._db.execute(self._q.set, self._prefix, key, value, ttl_ms)

    async def _delete(self, key: str) -> bool:
        live = await self._db.fetchval(self._q.delete, self._prefix, key)
        return live is True

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        result: int | None = await self._db.fetchval(
            self._q.increment, self._prefix, key, delta, ttl_ms
        )
        if result is None:
            raise SerializationError(
                f"increment on {key!r} by {delta}: the current value is not a counter, or the "
                f"result would leave the signed 64-bit range; nothing was changed: {COUNTER_RULE}"
            )
        return result

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        row = await self._db.fetchrow(
            self._q.compare_and_swap, self._prefix, key, expected_version, new_value, ttl_ms
        )
        if row is None:
            return CasResult(ok=False, current_value=None, current_version=0)
        return CasResult(ok=row[0], current_value=row[1], current_version=row[2])

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        rows = await self._db.fetch(
            self._q.scan_keys, self._prefix, key_prefix, prefix_successor(key_prefix)
        )
        return [(row[0], row[1]) for row in rows]

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        rows = await self._db.fetch(self._q.scan_keys_by_kind, self._prefix, kind)
        return [(row[0], row[1]) for row in rows]

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        await self._db.execute(self._q.index_add, self._prefix, index, key, at_ms)

    async def _index_remove(self, index: str, key: str) -> None:
        await self._db.execute(self._q.index_remove, self._prefix, index, key)

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        rows = await self._db.fetch(self._q.index_due, self._prefix, index, now_ms)
        return [row[0] for row in rows]

    async def _purge(self) -> int:
        count: int = await self._db.fetchval(self._q.purge, self._prefix)
        return count

    async def sweep_expired(self) -> int:
        """Delete expired entries (of every prefix in the schema) in batches; returns how many.

        The background sweep calls this every few seconds; reads never need it (expired rows
        already behave as missing), it only reclaims space.
        """
        total = 0
        for _ in range(SWEEP_MAX_BATCHES):
            status = await self._run(
                "sweep_expired", self._db.execute(self._q.sweep_expired, SWEEP_BATCH)
            )
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < SWEEP_BATCH:
                break
        return total
