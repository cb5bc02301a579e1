"""The lock statements: one per operation of :class:`lockyard.locks.DistributedLock`.

Each is a named constant whose header comment gives its parameters and what it returns; ``{s}``
is the quoted schema name, filled in by :func:`lockyard.backends.postgres.sql.render`.
"""

from __future__ import annotations

_LEASE = "clock_timestamp() + $4::bigint * interval '1 millisecond'"

# Called in a statement's RETURNING, so only when it wrote a row: that statement's transaction
# commits without waiting for its WAL to be flushed (``SET LOCAL synchronous_commit = off``, for
# this one transaction). Only writes whose loss in a crash keeps mutual exclusion and fencing
# use it (release, break, leaving the queue): the argument is in docs/backends/postgres.md,
# *Durability*. Acquire and extend always wait for the flush.
_NO_FLUSH_WAIT = "set_config('synchronous_commit', 'off', true)"
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
# The first attempt of a waiting acquire whose owner has no queue entry: takes the lock if it is
# free and nobody waits for it (what ACQUIRE decides for such an owner), and does nothing else.
# Returns (fencing): the new token, or no row when not acquired; the caller then runs ACQUIRE,
# which queues it. One index read and one upsert: ACQUIRE's queue CTEs cost the server about
# 40% more CPU per uncontended cycle (docs/backends/postgres.md, *The uncontended cycle*).
ACQUIRE_UNQUEUED = f"""
INSERT INTO {{s}}.locks AS l (prefix, name, owner, expires_at, fencing)
VALUES ($1, $2, $3, {_LEASE}, 1)
ON CONFLICT (prefix, name) DO UPDATE
    SET owner = excluded.owner, expires_at = {_LEASE}, fencing = l.fencing + 1
    WHERE (l.owner IS NULL OR l.expires_at <= clock_timestamp())
      AND NOT EXISTS (
          SELECT FROM {{s}}.lock_waiters
          WHERE prefix = $1 AND name = $2 AND expires_at > clock_timestamp()
      )
RETURNING fencing
"""

# Params: $1 prefix, $2 name, $3 owner token, $4 ttl_ms.
# Returns one row (true) if $3 held a live lease, now reset to $4 from now; no row otherwise.
EXTEND = f"""
UPDATE {{s}}.locks SET expires_at = {_LEASE}
WHERE prefix = $1 AND name = $2 AND owner = $3 AND expires_at > clock_timestamp()
RETURNING true
"""

# The owner of the first live waiter of lock $2 (NULL when nobody live waits), notified that the
# lock is free: "<name>\n<owner>" on {channel} (lockyard.locks.release_signal; listeners wake
# only that owner's waiter). Not notified when it waits in the calling client ({client}): that
# client wakes it from the statement's result. pg_notify returns void; its text is '' and only
# its side effect counts, once: it runs above the LIMIT, on the head alone. Run only for a
# changed row (it sits in RETURNING); {others} may exclude the caller's own entry, which a
# DELETE's RETURNING still sees.
_NEXT_OWNER_NOTIFIED = """(
        SELECT CASE WHEN head.client = {client} THEN head.owner ELSE
            head.owner || left(pg_notify({channel}, $2 || E'\\n' || head.owner)::text, 0) END
        FROM (
            SELECT w.owner, w.client FROM {{s}}.lock_waiters AS w
            WHERE w.prefix = $1 AND w.name = $2 AND w.expires_at > clock_timestamp(){others}
            ORDER BY w.ticket
            LIMIT 1
        ) AS head
    )"""

# Params: $1 prefix, $2 name, $3 owner token, $4 notification channel, $5 the caller's client id.
# Returns one row (commit_without_flush, next_owner) if $3 held a live lease, now released (the
# row and its fencing counter stay, without owner), and the head of the queue notified as
# above; next_owner is that head (NULL when nobody is queued). No row (and nothing notified)
# otherwise. The commit does not wait for the WAL flush (_NO_FLUSH_WAIT).
RELEASE = f"""
UPDATE {{s}}.locks SET owner = NULL, expires_at = NULL
WHERE prefix = $1 AND name = $2 AND owner = $3 AND expires_at > clock_timestamp()
RETURNING {_NO_FLUSH_WAIT} AS commit_without_flush,
    {_NEXT_OWNER_NOTIFIED.format(client="$5", channel="$4", others="")} AS next_owner
"""

# Params: $1 prefix, $2 name, $3 notification channel, $4 the caller's client id.
# Returns one row (commit_without_flush, next_owner) if a live lease (any owner) was released
# and the head of the queue notified (as RELEASE), else no row. No wait for the flush, as RELEASE.
BREAK = f"""
UPDATE {{s}}.locks SET owner = NULL, expires_at = NULL
WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL AND expires_at > clock_timestamp()
RETURNING {_NO_FLUSH_WAIT} AS commit_without_flush,
    {_NEXT_OWNER_NOTIFIED.format(client="$4", channel="$3", others="")} AS next_owner
"""

# Params: $1 prefix, $2 name, $3 owner token, $4 notification channel, $5 the caller's client id.
# A waiter gives up: deletes $3's entry; if it had one and the lock is free, notifies the new
# head of the queue as RELEASE does (it would otherwise wait for a release that already
# happened). Returns one row (commit_without_flush, next_owner) if $3 had an entry, next_owner
# being that head or NULL; no row otherwise. No wait for the flush, as RELEASE.
LEAVE_QUEUE = f"""
DELETE FROM {{s}}.lock_waiters WHERE prefix = $1 AND name = $2 AND owner = $3
RETURNING {_NO_FLUSH_WAIT} AS commit_without_flush,
    CASE WHEN NOT EXISTS (
        SELECT FROM {{s}}.locks
        WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL AND expires_at > clock_timestamp()
    ) THEN {_NEXT_OWNER_NOTIFIED.format(client="$5", channel="$4", others=" AND w.owner <> $3")}
    END AS next_owner
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

# Params: $1 prefix, $2 name. Returns (owner, fencing, expires_in_ms) of the live lease of $2,
# or no row when it is free (lockyard.observe and elections read one lock with it).
HOLDER = f"""
SELECT owner, fencing, greatest(1, {_REMAINING_MS})::bigint AS expires_in_ms
FROM {{s}}.locks
WHERE prefix = $1 AND name = $2 AND owner IS NOT NULL AND expires_at > clock_timestamp()
"""
