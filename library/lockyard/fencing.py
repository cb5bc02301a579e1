"""Fencing a resource outside Lockyard with a guard's fencing token.

A lock's fencing token grows with every acquisition of its name, so a resource that remembers
the highest token it has accepted can refuse a writer whose lease has passed to someone else:
the old holder's token is lower. The resource must make the comparison and the write one
atomic step. Two recipes (docs/fencing.md has the whole story):

- A PostgreSQL table with a ``fence`` column: :class:`FencedTable` builds the statement
  (``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE t.fence <= excluded.fence``, or the plain
  ``UPDATE ... WHERE fence <= $token``) and :meth:`FencedTable.write` raises
  :class:`~lockyard.errors.StaleFenceError` when the row refused the token.
- An HTTP service: the client sends the token in the ``Lockyard-Fencing-Token`` header
  (:func:`fencing_headers`); the service admits it through a :class:`FenceGate` (highest token
  per resource) and answers 409 Conflict on :class:`~lockyard.errors.StaleFenceError`, before it
  writes, under the same mutex as the write.

Inside the store no token is needed: ``ly.store.set(key, value, fence=guard)`` checks the lease
itself (:mod:`lockyard.fenced_writes`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lockyard.errors import StaleFenceError
from lockyard.fenced_writes import fence_of

#: The HTTP header that carries a fencing token (a decimal integer).
FENCING_TOKEN_HEADER = "Lockyard-Fencing-Token"
#: The HTTP header that says what the token was issued for (the lock's name), informational.
FENCING_NAME_HEADER = "Lockyard-Fencing-Name"


def token_of(guard_or_token: object) -> int:
    """The fencing token of a guard (lock, permit, read-write hold), or an int as given."""
    if isinstance(guard_or_token, int) and not isinstance(guard_or_token, bool):
        return guard_or_token
    return fence_of(guard_or_token).fencing_token


def fencing_headers(guard: object) -> dict[str, str]:
    """The headers a client sends with a write to a service fenced by ``guard``'s lease."""
    fence = fence_of(guard)
    return {FENCING_TOKEN_HEADER: str(fence.fencing_token), FENCING_NAME_HEADER: fence.name}


class FenceGate:
    """The highest token a service has admitted per resource; older tokens are refused.

    Keep one gate per process for the resources it owns, and call :meth:`admit` under the same
    lock (or in the same transaction) as the write it guards, so that no write with a lower
    token can follow one with a higher token. A token equal to the highest is admitted: a holder
    writes as often as it likes. Thread-safe.
    """

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._mutex = threading.Lock()

    def highest(self, resource: str) -> int | None:
        return self._highest.get(resource)

    def admit(self, resource: str, token: int) -> None:
        """Record ``token`` for ``resource``, or raise ``StaleFenceError`` if it is older."""
        with self._mutex:
            highest = self._highest.get(resource)
            if highest is not None and token < highest:
                raise StaleFenceError(
                    f"{resource!r}: fencing token {token} is older than {highest}, which was "
                    "already admitted: the writer's lock has passed to another holder"
                )
            self._highest[resource] = token

    def admit_headers(self, resource: str, headers: Mapping[str, str]) -> int:
        """Read the token from HTTP ``headers`` (any case) and :meth:`admit` it; returns it.

        ``ValueError`` when the header is missing or not a decimal integer (answer 400).
        """
        wanted = FENCING_TOKEN_HEADER.lower()
        raw = next((v for k, v in headers.items() if k.lower() == wanted), None)
        if raw is None or not raw.strip().isdigit():
            raise ValueError(f"a fenced write needs the {FENCING_TOKEN_HEADER} header (an int)")
        token = int(raw)
        self.admit(resource, token)
        return token


class RowFetcher(Protocol):
    """What :class:`FencedTable` needs of a connection: asyncpg's ``Connection`` or ``Pool``."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


def _quote(identifier: str) -> str:
    """A SQL identifier, quoted; ``schema.table`` quotes both parts."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


@dataclass(frozen=True)
class FencedTable:
    """A PostgreSQL table whose rows keep the fencing token that last wrote them.

    The table needs the key columns (a primary key or unique constraint over them), the value
    columns, and a ``bigint`` fence column. A write lands only if its token is at least the
    row's, and stores its token; the comparison happens inside the one statement, on the row
    it locks, so concurrent writers are ordered by the database.
    """

    table: str
    key_columns: Sequence[str]
    value_columns: Sequence[str]
    fence_column: str = "fence"

    @property
    def upsert_sql(self) -> str:
        """Insert the row, or update it if the stored token is not higher. Parameters: the key
        columns, the value columns, then the token. Returns the row's token, or no row when
        the stored token was higher (nothing changed)."""
        table, fence = _quote(self.table), _quote(self.fence_column)
        columns = [*map(_quote, self.key_columns), *map(_quote, self.value_columns), fence]
        placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        updates = ", ".join(f"{c} = excluded.{c}" for c in [*map(_quote, self.value_columns)])
        keys = ", ".join(map(_quote, self.key_columns))
        return (
            f"INSERT INTO {table} AS t ({', '.join(columns)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}, {fence} = excluded.{fence} "
            f"WHERE t.{fence} <= excluded.{fence} RETURNING t.{fence}"
        )

    @property
    def update_sql(self) -> str:
        """``UPDATE ... WHERE <keys> AND fence <= $token``. Parameters as :attr:`upsert_sql`.
        Returns the row's token, or no row when the stored token was higher or the row is
        missing."""
        table, fence = _quote(self.table), _quote(self.fence_column)
        n_keys = len(self.key_columns)
        sets = [f"{_quote(c)} = ${n_keys + i + 1}" for i, c in enumerate(self.value_columns)]
        token = f"${n_keys + len(self.value_columns) + 1}"
        where = [f"{_quote(c)} = ${i + 1}" for i, c in enumerate(self.key_columns)]
        return (
            f"UPDATE {table} SET {', '.join(sets)}, {fence} = {token} "
            f"WHERE {' AND '.join(where)} AND {fence} <= {token} RETURNING {fence}"
        )

    async def write(
        self,
        db: RowFetcher,
        guard_or_token: object,
        keys: Sequence[Any],
        values: Sequence[Any],
        *,
        upsert: bool = True,
    ) -> None:
        """Write ``values`` to the row ``keys`` under ``guard_or_token``'s token; raises
        ``StaleFenceError`` (nothing changed) when the row holds a higher token (or, with
        ``upsert=False``, does not exist)."""
        token = token_of(guard_or_token)
        statement = self.upsert_sql if upsert else self.update_sql
        row = await db.fetchrow(statement, *keys, *values, token)
        if row is None:
            missing = "" if upsert else " (or the row does not exist)"
            raise StaleFenceError(
                f"{self.table} {tuple(keys)!r}: fencing token {token} refused: the row was "
                f"written with a higher token{missing}; nothing was changed"
            )
