"""The store's statements: one per operation of :class:`lockyard.store.StateStore`.

Each is a named constant whose header comment gives its parameters and what it returns; ``{s}``
is the quoted schema name, filled in by :func:`lockyard.backends.postgres.sql.render`.
"""

from __future__ import annotations

from lockyard.store import COUNTER_MAX_LENGTH, COUNTER_PATTERN, MAX_INDEX_TIMESTAMP_MS

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

# Params: $1 prefix. Deletes every entry, index entry, lock row (fencing counters included),
# lock waiter and permit row (semaphores, read-write locks) of the prefix. Returns (count) of
# the live entries deleted.
PURGE = f"""
WITH gone AS (DELETE FROM {{s}}.entries WHERE prefix = $1 RETURNING {_LIVE} AS live),
     unindexed AS (DELETE FROM {{s}}.time_index WHERE prefix = $1),
     unlocked AS (DELETE FROM {{s}}.locks WHERE prefix = $1),
     unqueued AS (DELETE FROM {{s}}.lock_waiters WHERE prefix = $1),
     unpermitted AS (DELETE FROM {{s}}.permit_sets WHERE prefix = $1),
     unheld AS (DELETE FROM {{s}}.permit_holders WHERE prefix = $1),
     unawaited AS (DELETE FROM {{s}}.permit_waiters WHERE prefix = $1)
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
