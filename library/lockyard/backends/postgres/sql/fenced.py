"""Fenced writes: each store write with a lease check, in one statement.

Each statement starts with the CTE ``fence``: the guard's lease row, read ``FOR SHARE``. That
lock is what makes the check and the write one atomic step. Under READ COMMITTED a statement's
other reads use the snapshot it started with, so a plain ``EXISTS`` could still see a lease
that a concurrent break or take-over has since committed, and write after the new holder did.
``FOR SHARE`` instead waits for a concurrent change of the lease row and re-reads its latest
version, and then keeps the row locked until the write commits, so a release, break or
take-over (each an ``UPDATE`` or ``DELETE`` of that row) waits for the write: the write is
ordered before it, or sees it and writes nothing.

The data part of each statement is the unfenced statement of :mod:`.store` with its source
rows taken ``FROM fence`` (no fence row, nothing written). Parameters: those of the unfenced
statement, ``$1``..``$n``, then the fence's: lock: ``$n+1`` name, ``$n+2`` owner; permit
(semaphore, read-write lock): ``$n+1`` name, ``$n+2`` owner, ``$n+3`` space. Every statement
returns one row whose first column, ``held``, says whether the lease was held; the other
columns are what the unfenced statement returns (see each).
"""

from __future__ import annotations

from dataclasses import dataclass

from .store import _DEADLINE, _LIVE, INCREMENT, SET

_LOCK_FENCE = """
    SELECT 1 FROM {{s}}.locks
    WHERE prefix = $1 AND name = ${name} AND owner = ${owner} AND expires_at > clock_timestamp()
    FOR SHARE"""
_PERMIT_FENCE = """
    SELECT 1 FROM {{s}}.permit_holders
    WHERE prefix = $1 AND space = ${space} AND name = ${name} AND owner = ${owner}
      AND expires_at > clock_timestamp()
    FOR SHARE"""


def _fence(kind: str, params: int) -> str:
    """The fence CTE for a statement with ``params`` data parameters."""
    if kind == "lock":
        return _LOCK_FENCE.format(name=params + 1, owner=params + 2)
    return _PERMIT_FENCE.format(name=params + 1, owner=params + 2, space=params + 3)


def _from_fence(statement: str) -> str:
    """An unfenced ``INSERT ... VALUES (...)`` as ``INSERT ... SELECT ... FROM fence``."""
    head, values = statement.split("VALUES (", 1)
    row, rest = values.split(")\nON CONFLICT", 1)
    return f"{head}SELECT {row} FROM fence\nON CONFLICT{rest}"


# check_and_set. Data params: $1 prefix, $2 key, $3 value, $4 ttl ms. Returns (held, created).
_CHECK_AND_SET = f"""
WITH fence AS MATERIALIZED ({{fence}}),
created AS (
    INSERT INTO {{{{s}}}}.entries AS e (prefix, key, value, version, expires_at)
    SELECT $1, $2, $3, 1, {_DEADLINE} FROM fence
    ON CONFLICT (prefix, key) DO UPDATE
        SET value = excluded.value, version = 1, expires_at = {_DEADLINE}
        WHERE e.expires_at <= clock_timestamp()
    RETURNING true
)
SELECT EXISTS (SELECT FROM fence) AS held, EXISTS (SELECT FROM created) AS created
"""

# set. Data params: $1 prefix, $2 key, $3 value, $4 ttl ms. Returns (held).
_SET = f"""
WITH fence AS MATERIALIZED ({{fence}}),
written AS ({_from_fence(SET.strip()).replace("{", "{{").replace("}", "}}")})
SELECT EXISTS (SELECT FROM fence) AS held
"""

# delete. Data params: $1 prefix, $2 key. Returns (held, live): live as DELETE's.
_DELETE = f"""
WITH fence AS MATERIALIZED ({{fence}}),
gone AS (
    DELETE FROM {{{{s}}}}.entries
    WHERE prefix = $1 AND key = $2 AND EXISTS (SELECT FROM fence)
    RETURNING {_LIVE} AS live
)
SELECT EXISTS (SELECT FROM fence) AS held, coalesce((SELECT live FROM gone), false) AS live
"""

# increment. Data params: $1 prefix, $2 key, $3 delta, $4 ttl ms. Returns (held, value): value
# NULL when the current value is not a counter or the sum leaves int64 (as INCREMENT).
_INCREMENT = f"""
WITH fence AS MATERIALIZED ({{fence}}),
counted AS ({_from_fence(INCREMENT.strip()).replace("{", "{{").replace("}", "}}")})
SELECT EXISTS (SELECT FROM fence) AS held, (SELECT value FROM counted) AS value
"""

# compare_and_swap. Data params: $1 prefix, $2 key, $3 expected version, $4 new value, $5 ttl
# ms. Returns (held, ok, value, version) as COMPARE_AND_SWAP's rows: (true, true, new value, new
# version) when swapped, (true, false, value, version) on a conflict; no row when the lease is
# held and the key is missing or expired; (false, NULL, NULL, NULL) when the lease is gone.
_COMPARE_AND_SWAP = """
WITH fence AS MATERIALIZED ({fence}),
swapped AS (
    UPDATE {{s}}.entries AS e
    SET value = $4, version = e.version + 1,
        expires_at = clock_timestamp() + $5::bigint * interval '1 millisecond'
    WHERE e.prefix = $1 AND e.key = $2 AND e.version = $3
      AND (e.expires_at IS NULL OR e.expires_at > clock_timestamp())
      AND EXISTS (SELECT FROM fence)
    RETURNING e.value, e.version
), current AS (
    SELECT value, version FROM {{s}}.entries
    WHERE prefix = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > clock_timestamp())
      AND NOT EXISTS (SELECT FROM swapped) AND EXISTS (SELECT FROM fence)
    FOR UPDATE
)
SELECT true AS held, true AS ok, value, version FROM swapped
UNION ALL
SELECT true, false, value, version FROM current
UNION ALL
SELECT false, NULL, NULL, NULL WHERE NOT EXISTS (SELECT FROM fence)
"""

# index_timeout / index_chain_ready. Data params: $1 prefix, $2 index name, $3 key, $4 at ms.
# Returns (held).
_INDEX_ADD = """
WITH fence AS MATERIALIZED ({fence}),
added AS (
    INSERT INTO {{s}}.time_index (prefix, index_name, key, at_ms)
    SELECT $1, $2, $3, $4 FROM fence
    ON CONFLICT (prefix, index_name, key) DO UPDATE SET at_ms = excluded.at_ms
)
SELECT EXISTS (SELECT FROM fence) AS held
"""

# remove_timeout_index / remove_chain_ready_index. Data params: $1 prefix, $2 index name, $3
# key. Returns (held).
_INDEX_REMOVE = """
WITH fence AS MATERIALIZED ({fence}),
removed AS (
    DELETE FROM {{s}}.time_index
    WHERE prefix = $1 AND index_name = $2 AND key = $3 AND EXISTS (SELECT FROM fence)
)
SELECT EXISTS (SELECT FROM fence) AS held
"""

#: (statement template, number of data parameters), by operation.
_TEMPLATES: dict[str, tuple[str, int]] = {
    "check_and_set": (_CHECK_AND_SET, 4),
    "set": (_SET, 4),
    "delete": (_DELETE, 2),
    "increment": (_INCREMENT, 4),
    "compare_and_swap": (_COMPARE_AND_SWAP, 5),
    "index_add": (_INDEX_ADD, 4),
    "index_remove": (_INDEX_REMOVE, 3),
}


@dataclass(frozen=True, slots=True)
class FencedStatements:
    """Every fenced statement with the schema filled in, by (kind of fence, operation)."""

    by_kind: dict[tuple[str, str], str]


def render_fenced(schema: str) -> FencedStatements:
    from .schema import quote_schema

    s = quote_schema(schema)
    by_kind = {}
    for kind in ("lock", "permit"):
        for operation, (template, params) in _TEMPLATES.items():
            text = template.format(fence=_fence(kind, params)).format(s=s)
            by_kind[kind, operation] = text.strip()
    return FencedStatements(by_kind)
