"""SQL of the PostgreSQL backend: the versioned schema migrations and one statement per operation.

Every statement is a named constant whose comment gives its parameters and what it returns.
``{s}`` stands for the quoted schema name; :func:`render` fills it in once per backend, so each
statement's text is constant and asyncpg's per-connection prepared-statement cache always hits.

Conventions in the statements:

- ``$1`` is always the store's prefix: every table is keyed by it first, so stores with different
  prefixes in one schema never meet.
- Time is the database's: ``clock_timestamp()``, never the client's. A row is *live* when
  ``expires_at IS NULL OR expires_at > clock_timestamp()``; an expired row behaves as missing in
  every statement, inside the same statement (no read-then-write window).
- TTLs arrive as whole milliseconds (``bigint``, ``NULL`` for none) and become
  ``clock_timestamp() + ttl * interval '1 millisecond'`` (``NULL`` stays ``NULL``).
- Text columns use the ``"C"`` collation: byte order, which for UTF-8 is code point order, so a
  key range ``[p, successor(p))`` is exactly "starts with ``p``" and uses the btree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lockyard.store import COUNTER_MAX_LENGTH, COUNTER_PATTERN, MAX_INDEX_TIMESTAMP_MS

LATEST_VERSION = 3

# -- migrations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One schema version: its number, what it adds, and its statements (run in order)."""

    version: int
    description: str
    statements: tuple[str, ...]


# Params: $1 a text naming the schema. Returns nothing; blocks until this transaction holds the
# schema's migration lock (released at commit or rollback), which serialises concurrent migrators.
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

# Params: none. Creates the schema and its version table if missing (under MIGRATION_LOCK only).
CREATE_VERSION_TABLE = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# Params: $1 the qualified name of the version table. Returns it as regclass, or NULL if missing.
VERSION_TABLE_EXISTS = "SELECT to_regclass($1)"

# Params: none. Returns the schema's version (0 before the first migration).
CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM {s}.schema_version"

# Params: $1 version, $2 description. Records one applied migration.
RECORD_VERSION = "INSERT INTO {s}.schema_version (version, description) VALUES ($1, $2)"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "entries, the two time indexes and lock leases",
        (
            # One row per key. `kind` is derived from the key, so scans by kind use an index
            # without the client sending it. fillfactor leaves room for HOT updates.
            """
            CREATE TABLE {s}.entries (
                prefix text COLLATE "C" NOT NULL,
                key text COLLATE "C" NOT NULL,
                kind text COLLATE "C" NOT NULL GENERATED ALWAYS AS (split_part(key, ':', 3)) STORED,
                value text COLLATE "C" NOT NULL,
                version bigint NOT NULL,
                expires_at timestamptz,
                PRIMARY KEY (prefix, key)
            ) WITH (fillfactor = 85)
            """,
            "CREATE INDEX entries_by_kind ON {s}.entries (prefix, kind)",
            # Only rows with a deadline; the background sweep walks it in deadline order.
            """
            CREATE INDEX entries_by_expiry ON {s}.entries (expires_at)
            WHERE expires_at IS NOT NULL
            """,
            # Both time indexes in one table, told apart by index_name ('timeout' or 'chain').
            """
            CREATE TABLE {s}.time_index (
                prefix text COLLATE "C" NOT NULL,
                index_name text COLLATE "C" NOT NULL,
                key text COLLATE "C" NOT NULL,
                at_ms bigint NOT NULL,
                PRIMARY KEY (prefix, index_name, key)
            )
            """,
            # What is due: a range on at_ms, answered from the index alone (O(log N + M)).
            """
            CREATE INDEX time_index_due ON {s}.time_index (prefix, index_name, at_ms)
            INCLUDE (key)
            """,
            # One row per lock name, kept after release (owner NULL) so that `fencing` only
            # ever grows for that name.
            """
            CREATE TABLE {s}.locks (
                prefix text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                owner text COLLATE "C",
                expires_at timestamptz,
                fencing bigint NOT NULL,
                PRIMARY KEY (prefix, name)
            )
            """,
        ),
    ),
    Migration(
        2,
        "time index: the due-range index made partial, so lookups by key use the primary key",
        (
            # Before the table's first ANALYZE, the planner rated the due index as good as the
            # primary key for DELETE ... WHERE prefix, index_name, key (both one row by default
            # selectivity) and sometimes scanned every entry of the index through it. A lookup by
            # key cannot prove this predicate, so only the due-range query (which states it)
            # may use the index.
            "DROP INDEX {s}.time_index_due",
            f"""
            CREATE INDEX time_index_due ON {{s}}.time_index (prefix, index_name, at_ms)
            INCLUDE (key) WHERE at_ms >= {-MAX_INDEX_TIMESTAMP_MS}
            """,
        ),
    ),
    Migration(
        3,
        "lock waiter queues (first come, first served hand-off)",
        (
            # The callers waiting for each lock, in arrival order (ticket), each with a waiter
            # lease (expires_at) that every attempt renews, and the id of the client (backend
            # instance) it waits in. UNLOGGED: an entry lives seconds and the waiter's next
            # attempt re-creates it, so it needs no WAL; after a crash the table is empty
            # (waiters re-join), and it is not replicated. Lock safety never depends on it:
            # leases and fencing stay in the logged `locks` table.
            """
            CREATE UNLOGGED TABLE {s}.lock_waiters (
                prefix text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                owner text COLLATE "C" NOT NULL,
                client text COLLATE "C" NOT NULL,
                ticket bigint GENERATED ALWAYS AS IDENTITY,
                expires_at timestamptz NOT NULL,
                PRIMARY KEY (prefix, name, owner)
            ) WITH (fillfactor = 70)
            """,
            # The head of a queue: the first live entry by ticket.
            "CREATE INDEX lock_waiters_queue ON {s}.lock_waiters (prefix, name, ticket)",
        ),
    ),
)

# -- data operations ------------------------------------------------------------------------------

_LIVE = "(expires_at IS NULL OR expires_at > clock_timestamp())"
_DEADLINE = "clock_timestamp() + $4::bigint * interval '1 millisecond'"

# Params: $1 prefix, $2 key, $3 value, $4 ttl_ms or NULL.
# Returns one row (true) if this call created the key (it was absent or expired), no row if a
# live value exists (left untouched). Concurrent callers serialise on the row: one wins.
CHECK_AND_SET = f"""
INSERT INTO {{s}}.entries AS e (prefix, key, value, version, expires_at)
VALUES ($1, $2, $3, 1, {_DEADLINE})
ON CONFLICT (prefix, key) DO UPDATE
    SET value = excluded.value, version = 1, expires_at = {_DEADLINE}
    WHERE e.expires_at <= clock_timestamp()
RETURNING true
"""

# Params: $1 prefix, $2 key. Returns (value) of the live key, or no row.
GET = f"SELECT value FROM {{s}}.entries WHERE prefix = $1 AND key = $2 AND {_LIVE}"

# Params: $1 prefix, $2 key. Returns (value, version) of the live key, or no row.
GET_VERSIONED = (
    f"SELECT value, version FROM {{s}}.entries WHERE prefix = $1 AND key = $2 AND {_LIVE}"
)

# Params: $1 prefix, $2 key, $3 value, $4 ttl_ms or NULL (NULL clears an earlier expiry).
# Returns nothing. Version 1 on create or over an expired row, +1 over a live one.
SET = f"""
INSERT INTO {{s}}.entries AS e (prefix, key, value, version, expires_at)
VALUES ($1, $2, $3, 1, {_DEADLINE})
ON CONFLICT (prefix, key) DO UPDATE
    SET value = excluded.value,
        version = CASE WHEN e.expires_at <= clock_timestamp() THEN 1 ELSE e.version + 1 END,
        expires_at = {_DEADLINE}
"""

# Params: $1 prefix, $2 key. Returns (live) if a row was deleted: true when it was live, false
# when it had expired (an expired row is garbage and goes too); no row if there was none.
DELETE = f"DELETE FROM {{s}}.entries WHERE prefix = $1 AND key = $2 RETURNING {_LIVE}"

# A counter, in the grammar every backend shares (lockyard.store.COUNTER_PATTERN, what Redis's
# HINCRBY reads): the canonical decimal of an int64, nothing before or after it. `$` is the end
# of the string (not before a final newline), and under the C collation [0-9] is ASCII only.
# The length test comes first so that ::numeric never meets a long digit string.
_COUNTER_SHAPE = f"length(e.value) <= {COUNTER_MAX_LENGTH} AND e.value ~ '^({COUNTER_PATTERN})$'"
_INT64 = "-9223372036854775808 AND 9223372036854775807"

# Params: $1 prefix, $2 key, $3 delta (bigint), $4 ttl_ms or NULL (keep a live key's expiry).
# Returns (value) the new counter as bigint. No row when the live value is not a counter
# (_COUNTER_SHAPE and within int64) or the sum leaves signed 64-bit: nothing changed (the caller
# raises SerializationError). A missing or expired key starts from 0 with version 1. The casts
# run only on values of counter shape (CASE) and the sum is checked in numeric, so no SQL error
# is raised; liveness is read once (the sub-select) so value, version and expiry agree.
INCREMENT = f"""
INSERT INTO {{s}}.entries AS e (prefix, key, value, version, expires_at)
VALUES ($1, $2, $3::bigint::text, 1, {_DEADLINE})
ON CONFLICT (prefix, key) DO UPDATE
    SET (value, version, expires_at) = (
        SELECT CASE WHEN t.live THEN (e.value::numeric + $3)::bigint::text ELSE excluded.value END,
               CASE WHEN t.live THEN e.version + 1 ELSE 1 END,
               CASE WHEN $4::bigint IS NOT NULL THEN t.now + $4::bigint * interval '1 millisecond'
                    WHEN t.live THEN e.expires_at END
        FROM (SELECT now, e.expires_at IS NULL OR e.expires_at > now AS live
              FROM (SELECT clock_timestamp() AS now) c) t
    )
    WHERE e.expires_at <= clock_timestamp()
       OR CASE WHEN {_COUNTER_SHAPE}
               THEN e.value::numeric BETWEEN {_INT64} AND e.value::numeric + $3 BETWEEN {_INT64}
               ELSE false END
RETURNING value::bigint
"""

# Params: $1 prefix, $2 key, $3 expected version, $4 new value, $5 ttl_ms or NULL.
# Returns one row (ok, value, version): ok=true with the new value and version when the live
# version equalled $3; ok=false with the current live value and version otherwise; no row when
# the key is missing or expired (nothing is created). The UPDATE comes first (the common case is
# one index lookup and one write). Only when it matched nothing does `current` read the row, FOR
# UPDATE: that waits for a concurrent writer and reads its committed row, so a loser reports the
# winner's version, not the one it was beaten with (a plain read would see the statement's
# snapshot). The NOT EXISTS runs once, before that scan (a one-time filter in the plan).
COMPARE_AND_SWAP = f"""
WITH swapped AS (
    UPDATE {{s}}.entries AS e
    SET value = $4, version = e.version + 1,
        expires_at = clock_timestamp() + $5::bigint * interval '1 millisecond'
    WHERE e.prefix = $1 AND e.key = $2 AND e.version = $3
      AND (e.expires_at IS NULL OR e.expires_at > clock_timestamp())
    RETURNING e.value, e.version
), current AS (
    SELECT value, version FROM {{s}}.entries
    WHERE prefix = $1 AND key = $2 AND {_LIVE} AND NOT EXISTS (SELECT FROM swapped)
    FOR UPDATE
)
SELECT true AS ok, value, version FROM swapped
UNION ALL
SELECT false, value, version FROM current
"""

# Params: $1 prefix, $2 key prefix (literal), $3 the successor of $2 (the smallest string above
# every string that starts with $2). Returns (key, value) of every live key starting with $2.
# The range uses the primary key's btree; starts_with() states the match exactly.
SCAN_KEYS = f"""
SELECT key, value FROM {{s}}.entries
WHERE prefix = $1 AND key >= $2 AND key < $3 AND starts_with(key, $2) AND {_LIVE}
"""

# Params: $1 prefix, $2 kind. Returns (key, value) of every live key of exactly that kind.
SCAN_KEYS_BY_KIND = f"""
SELECT key, value FROM {{s}}.entries WHERE prefix = $1 AND kind = $2 AND {_LIVE}
"""

# Params: $1 prefix, $2 index name ('timeout' or 'chain'), $3 key, $4 at_ms.
# Returns nothing; a key is in an index once: re-indexing replaces its timestamp.
INDEX_ADD = """
INSERT INTO {s}.time_index (prefix, index_name, key, at_ms) VALUES ($1, $2, $3, $4)
ON CONFLICT (prefix, index_name, key) DO UPDATE SET at_ms = excluded.at_ms
"""

# Params: $1 prefix, $2 index name, $3 key. Returns nothing (absent is a no-op).
INDEX_REMOVE = "DELETE FROM {s}.time_index WHERE prefix = $1 AND index_name = $2 AND key = $3"

# Params: $1 prefix, $2 index name, $3 now_ms. Returns (key) of every entry with at_ms <= $3.
# The lower bound (every timestamp is within it) lets the planner use the partial due index.
INDEX_DUE = f"""
SELECT key FROM {{s}}.time_index
WHERE prefix = $1 AND index_name = $2 AND at_ms >= {-MAX_INDEX_TIMESTAMP_MS} AND at_ms <= $3
"""

# Params: $1 prefix. Deletes every entry, index entry, lock row (fencing counters included) and
# lock waiter of the prefix. Returns (count) of the live entries deleted.
PURGE = f"""
WITH gone AS (DELETE FROM {{s}}.entries WHERE prefix = $1 RETURNING {_LIVE} AS live),
     unindexed AS (DELETE FROM {{s}}.time_index WHERE prefix = $1),
     unlocked AS (DELETE FROM {{s}}.locks WHERE prefix = $1),
     unqueued AS (DELETE FROM {{s}}.lock_waiters WHERE prefix = $1)
SELECT count(*) FILTER (WHERE live) FROM gone
"""

# Params: $1 batch size. Deletes up to $1 expired entries of any prefix, oldest deadline first,
# skipping rows another session has locked (a writer about to revive them, or another sweeper).
# Returns the command status "DELETE n". now() (stable, unlike clock_timestamp()) lets the
# deadline test be an index condition on entries_by_expiry; the ctid list makes the delete a
# TID scan, and the repeated deadline test keeps a row that was revived in between.
SWEEP_EXPIRED = """
DELETE FROM {s}.entries
WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM {s}.entries
        WHERE expires_at < now()
        ORDER BY expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
  AND expires_at < now()
"""

# -- locks ----------------------------------------------------------------------------------------

_LEASE = "clock_timestamp() + $4::bigint * interval '1 millisecond'"
_REMAINING_MS = "ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000)"

# The first live waiter of lock $2 (expired entries are skipped; the background sweep deletes
# them). An index range on lock_waiters_queue, in ticket order.
_QUEUE_HEAD = """
    SELECT owner, expires_at FROM {s}.lock_waiters
    WHERE prefix = $1 AND name = $2 AND expires_at > clock_timestamp()
    ORDER BY ticket
    LIMIT 1
"""

# Params: $1 prefix, $2 name, $3 owner token, $4 ttl_ms, $5 waiter lease ms, or NULL for an
# attempt that does not queue (try_acquire: takes a free lock whoever waits), $6 the caller's
# client id (recorded with its queue entry).
# Returns one row (fencing, retry_after_ms). Acquired: fencing is the new token (the name's
# counter + 1, or 1 for a new name). Not acquired: fencing is NULL and retry_after_ms the holder's
# remaining lease, or, when the lock is free but another waiter is first, that waiter's remaining
# waiter lease (as of this statement's snapshot; NULL when unknown). The lock is free when its
# row has no owner or its lease has passed; the row lock of ON CONFLICT serialises acquirers.
# A waiting attempt ($5 set) takes a free lock only if no live waiter is queued ahead of $3, and
# then deletes $3's entry (when $3 was the head); otherwise it queues $3 at the tail or, when
# $3 is queued already, keeps its ticket and renews its waiter lease to $5 from now.
# The subqueries that only a failed or queued attempt needs sit behind one-time filters, so the
# uncontended path reads one extra index (the head) and nothing else.
ACQUIRE = f"""
WITH head AS ({_QUEUE_HEAD}), acquired AS (
    INSERT INTO {{s}}.locks AS l (prefix, name, owner, expires_at, fencing)
    VALUES ($1, $2, $3, {_LEASE}, 1)
    ON CONFLICT (prefix, name) DO UPDATE
        SET owner = excluded.owner, expires_at = {_LEASE}, fencing = l.fencing + 1
        WHERE (l.owner IS NULL OR l.expires_at <= clock_timestamp())
          AND ($5::bigint IS NULL OR coalesce((SELECT owner FROM head), $3) = $3)
    RETURNING fencing
), dequeued AS (
    DELETE FROM {{s}}.lock_waiters
    WHERE prefix = $1 AND name = $2 AND owner = $3
      AND EXISTS (SELECT FROM acquired) AND EXISTS (SELECT FROM head WHERE owner = $3)
), queued AS (
    INSERT INTO {{s}}.lock_waiters (prefix, name, owner, client, expires_at)
    SELECT $1, $2, $3, $6, clock_timestamp() + $5::bigint * interval '1 millisecond'
    WHERE $5::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM acquired)
    ON CONFLICT (prefix, name, owner) DO UPDATE SET expires_at = excluded.expires_at
)
SELECT f.fencing,
       CASE WHEN f.fencing IS NULL THEN coalesce(
           (SELECT greatest(0, {_REMAINING_MS})::bigint FROM {{s}}.locks
            WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL
              AND expires_at > clock_timestamp()),
           (SELECT greatest(0, {_REMAINING_MS})::bigint FROM head WHERE owner <> $3)
       ) END AS retry_after_ms
FROM (SELECT (SELECT fencing FROM acquired) AS fencing) AS f
"""

# Params: $1 prefix, $2 name, $3 owner token, $4 ttl_ms.
# Returns one row (true) if $3 held a live lease, now reset to $4 from now; no row otherwise.
EXTEND = f"""
UPDATE {{s}}.locks SET expires_at = {_LEASE}
WHERE prefix = $1 AND name = $2 AND owner = $3 AND expires_at > clock_timestamp()
RETURNING true
"""

# The head of the queue of lock $2 as one composite value (a lock_waiters row, NULL when nobody
# live waits): a scalar subquery, run only for a released row (see _QUEUE_HEAD).
_HEAD_ROW = """(
        SELECT w FROM {s}.lock_waiters AS w
        WHERE w.prefix = $1 AND w.name = $2 AND w.expires_at > clock_timestamp()
        ORDER BY w.ticket
        LIMIT 1
    )"""

# Notify the head of the queue (a composite `head`, see _HEAD_ROW) that lock `name` is free:
# "<name>\n<owner>" (lockyard.locks.release_signal; listeners wake only that owner's waiter).
# Nothing is sent when nobody waits (every waiting acquire is queued), nor when the head waits
# in the calling client ({client}): that client wakes it from the statement's result.
_NOTIFY_HEAD = """
    CASE WHEN (head).owner IS NOT NULL AND (head).client <> {client}
         THEN pg_notify({channel}, name || E'\\n' || (head).owner) END"""

# Params: $1 prefix, $2 name, $3 owner token, $4 notification channel, $5 the caller's client id.
# Returns one row (released, next_owner): released 1 if $3 held a live lease, now released (the
# row and its fencing counter stay, without owner), and the head of the queue notified as
# above; next_owner is that head (NULL when nobody is queued). released 0 (and nothing run or
# notified) otherwise.
RELEASE = f"""
WITH released AS (
    UPDATE {{s}}.locks SET owner = NULL, expires_at = NULL
    WHERE prefix = $1 AND name = $2 AND owner = $3 AND expires_at > clock_timestamp()
    RETURNING name, {_HEAD_ROW} AS head
)
SELECT count(*) AS released, max((head).owner) AS next_owner FROM (
    SELECT head,{_NOTIFY_HEAD.format(client="$5", channel="$4")}
    FROM released
) AS notified
"""

# Params: $1 prefix, $2 name, $3 notification channel, $4 the caller's client id.
# Returns one row (released, next_owner): released 1 if a live lease (any owner) was released
# and the head of the queue notified (as RELEASE), else 0.
BREAK = f"""
WITH broken AS (
    UPDATE {{s}}.locks SET owner = NULL, expires_at = NULL
    WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL AND expires_at > clock_timestamp()
    RETURNING name, {_HEAD_ROW} AS head
)
SELECT count(*) AS released, max((head).owner) AS next_owner FROM (
    SELECT head,{_NOTIFY_HEAD.format(client="$4", channel="$3")}
    FROM broken
) AS notified
"""

# Params: $1 prefix, $2 name, $3 owner token, $4 notification channel, $5 the caller's client id.
# A waiter gives up: deletes $3's entry; if it had one and the lock is free, notifies the new
# head of the queue as RELEASE does (it would otherwise wait for a release that already
# happened). Returns (next_owner): that head, or NULL.
LEAVE_QUEUE = f"""
WITH gone AS (
    DELETE FROM {{s}}.lock_waiters WHERE prefix = $1 AND name = $2 AND owner = $3
    RETURNING name
), next AS (
    SELECT name, (
        SELECT w FROM {{s}}.lock_waiters AS w
        WHERE w.prefix = $1 AND w.name = $2 AND w.owner <> $3
          AND w.expires_at > clock_timestamp()
        ORDER BY w.ticket
        LIMIT 1
    ) AS head
    FROM gone
    WHERE NOT EXISTS (
        SELECT FROM {{s}}.locks
        WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL AND expires_at > clock_timestamp()
    )
)
SELECT max((head).owner) FROM (
    SELECT head,{_NOTIFY_HEAD.format(client="$5", channel="$4")}
    FROM next
) AS notified
"""

# Params: none. Deletes the waiter entries (of every prefix) whose waiter lease has passed;
# attempts and releases skip them already, this only reclaims the rows of abandoned queues.
# Returns the command status "DELETE n". A sequential scan of a table of live waiters.
SWEEP_WAITERS = "DELETE FROM {s}.lock_waiters WHERE expires_at < now()"

# Params: $1 prefix, $2 name, $3 owner token. Returns (held) whether $3 holds a live lease.
IS_HELD = """
SELECT EXISTS (
    SELECT FROM {s}.locks
    WHERE prefix = $1 AND name = $2 AND owner = $3 AND expires_at > clock_timestamp()
)
"""

# Params: $1 prefix. Returns (name, owner, fencing, expires_in_ms) of every live lease.
LIST_HELD = f"""
SELECT name, owner, fencing, greatest(1, {_REMAINING_MS})::bigint AS expires_in_ms
FROM {{s}}.locks
WHERE prefix = $1 AND owner IS NOT NULL AND expires_at > clock_timestamp()
"""

# -- administration -------------------------------------------------------------------------------

# Params: none. Returns (1): the cheapest round trip.
PING = "SELECT 1"

# Params: none. Returns (server_version) as the server reports it.
SERVER_VERSION = "SELECT current_setting('server_version')"


@dataclass(frozen=True, slots=True)
class Statements:
    """Every per-operation statement with the schema filled in (see :func:`render`)."""

    check_and_set: str
    get: str
    get_versioned: str
    set: str
    delete: str
    increment: str
    compare_and_swap: str
    scan_keys: str
    scan_keys_by_kind: str
    index_add: str
    index_remove: str
    index_due: str
    purge: str
    sweep_expired: str
    acquire: str
    extend: str
    release: str
    break_: str
    leave_queue: str
    sweep_waiters: str
    is_held: str
    list_held: str
    current_version: str
    record_version: str
    create_version_table: str


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier (the config already restricts it to [a-z0-9_])."""
    return '"' + schema.replace('"', '""') + '"'


def render(schema: str) -> Statements:
    """All statements for ``schema``; the texts are built once and then never change."""
    s = quote_schema(schema)
    sources = {
        "check_and_set": CHECK_AND_SET,
        "get": GET,
        "get_versioned": GET_VERSIONED,
        "set": SET,
        "delete": DELETE,
        "increment": INCREMENT,
        "compare_and_swap": COMPARE_AND_SWAP,
        "scan_keys": SCAN_KEYS,
        "scan_keys_by_kind": SCAN_KEYS_BY_KIND,
        "index_add": INDEX_ADD,
        "index_remove": INDEX_REMOVE,
        "index_due": INDEX_DUE,
        "purge": PURGE,
        "sweep_expired": SWEEP_EXPIRED,
        "acquire": ACQUIRE,
        "extend": EXTEND,
        "release": RELEASE,
        "break_": BREAK,
        "leave_queue": LEAVE_QUEUE,
        "sweep_waiters": SWEEP_WAITERS,
        "is_held": IS_HELD,
        "list_held": LIST_HELD,
        "current_version": CURRENT_VERSION,
        "record_version": RECORD_VERSION,
        "create_version_table": CREATE_VERSION_TABLE,
    }
    assert set(sources) == {f.name for f in fields(Statements)}
    return Statements(**{name: text.strip().format(s=s) for name, text in sources.items()})


def migration_statements(schema: str, migration: Migration) -> list[str]:
    s = quote_schema(schema)
    return [statement.strip().format(s=s) for statement in migration.statements]
