"""The PostgreSQL state store: each operation one prepared statement (:mod:`.sql.store`).

Expired rows behave as missing inside every statement; :meth:`PostgresStateStore.sweep_expired`
only reclaims their space, in batches, from the backend's background sweep.
"""

from __future__ import annotations

from lockyard.errors import SerializationError
from lockyard.operations import OperationRunner
from lockyard.store import COUNTER_RULE, CasResult, StateStore

from . import rows as r
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
        return r.true_or_none("check_and_set", created)

    async def _get(self, key: str) -> str | None:
        value = await self._db.fetchval(self._q.get, self._prefix, key)
        return r.text_or_none("get", value, "a value")

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        row = await self._db.fetchrow(self._q.get_versioned, self._prefix, key)
        return r.versioned("get_versioned", row)

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        status = await self._db.execute(self._q.set, self._prefix, key, value, ttl_ms)
        r.status("set", status, "INSERT 0 ")

    async def _delete(self, key: str) -> bool:
        live = await self._db.fetchval(self._q.delete, self._prefix, key)
        if live is None:
            return False
        return r.boolean("delete", live)

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        result = r.integer_or_none(
            "increment",
            await self._db.fetchval(self._q.increment, self._prefix, key, delta, ttl_ms),
            "a counter or no row",
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
        ok, value, version = r.swapped("compare_and_swap", row)
        return CasResult(ok=ok, current_value=value, current_version=version)

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        found = await self._db.fetch(
            self._q.scan_keys, self._prefix, key_prefix, prefix_successor(key_prefix)
        )
        return r.pairs("scan_keys", found)

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        found = await self._db.fetch(self._q.scan_keys_by_kind, self._prefix, kind)
        return r.pairs("scan_keys_by_kind", found)

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        status = await self._db.execute(self._q.index_add, self._prefix, index, key, at_ms)
        r.status("index_add", status, "INSERT 0 ")

    async def _index_remove(self, index: str, key: str) -> None:
        status = await self._db.execute(self._q.index_remove, self._prefix, index, key)
        r.status("index_remove", status, "DELETE ")

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        found = await self._db.fetch(self._q.index_due, self._prefix, index, now_ms)
        return r.keys("index_due", found)

    async def _purge(self) -> int:
        return r.integer("purge", await self._db.fetchval(self._q.purge, self._prefix), "a count")

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
            deleted = r.deleted("sweep_expired", status)
            total += deleted
            if deleted < SWEEP_BATCH:
                break
        return total
