"""The permit tables' schema (migration 4) and statements: semaphores and read-write locks.

The rule is :mod:`lockyard.permits`'s. Per (prefix, space, name): one ``permit_sets`` row with
the limit and the fencing counter (kept for ever, so tokens only grow), one ``permit_holders``
row per live holder, and the waiters in ``permit_waiters`` (UNLOGGED, as ``lock_waiters``).

Why functions. An attempt must count the holders *after* it has serialised with every other
attempt on the name. A single SQL statement reads other tables with the snapshot it started
with, so a permit committed while it waited for the name's row lock would be missed, and the
limit overrun. In a PL/pgSQL function under READ COMMITTED each statement takes a fresh
snapshot: the function first locks the name's ``permit_sets`` row (``FOR UPDATE``), then counts
what every earlier attempt committed. Calling it is still one statement and one round trip.
Extend, is-held and list are single statements: they change no count.

``{s}`` is the quoted schema; parameters are named in the functions and ``$n`` elsewhere, each
statement's header says which.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_TABLES = (
    # One row per name: its limit (fixed by the first attempt) and its fencing counter.
    """
    CREATE TABLE {s}.permit_sets (
        prefix text COLLATE "C" NOT NULL,
        space text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        lim bigint NOT NULL,
        fencing bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (prefix, space, name)
    )
    """,
    # One row per live holder (expired rows are deleted by the next attempt on the name, and by
    # the background sweep).
    """
    CREATE TABLE {s}.permit_holders (
        prefix text COLLATE "C" NOT NULL,
        space text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        owner text COLLATE "C" NOT NULL,
        weight bigint NOT NULL,
        fencing bigint NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (prefix, space, name, owner)
    ) WITH (fillfactor = 80)
    """,
    # The queue: arrival order (ticket), waiter lease, weight and the client the waiter waits in.
    """
    CREATE UNLOGGED TABLE {s}.permit_waiters (
        prefix text COLLATE "C" NOT NULL,
        space text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        owner text COLLATE "C" NOT NULL,
        client text COLLATE "C" NOT NULL,
        weight bigint NOT NULL,
        ticket bigint GENERATED ALWAYS AS IDENTITY,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (prefix, space, name, owner)
    ) WITH (fillfactor = 70)
    """,
    "CREATE INDEX permit_waiters_queue ON {s}.permit_waiters (prefix, space, name, ticket)",
)

# Signal the waiters of a name that fit now (in queue order, stopping at the first that does
# not, at most 256): NOTIFY "<signal>\n<owner>" on the channel for those waiting in other
# clients. Returns the owners waiting in p_client (the caller wakes them itself). Called with
# the name's permit_sets row locked.
_PERMIT_SIGNAL = """
CREATE FUNCTION {s}.permit_signal(
    p_prefix text, p_space text, p_name text, p_channel text, p_signal text, p_client text
) RETURNS text[] LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := clock_timestamp();
    v_limit bigint;
    v_used bigint;
    v_mine text[] := ARRAY[]::text[];
    r record;
BEGIN
    SELECT s.lim INTO v_limit FROM {s}.permit_sets AS s
    WHERE s.prefix = p_prefix AND s.space = p_space AND s.name = p_name;
    SELECT coalesce(sum(h.weight), 0) INTO v_used FROM {s}.permit_holders AS h
    WHERE h.prefix = p_prefix AND h.space = p_space AND h.name = p_name AND h.expires_at > v_now;
    FOR r IN
        SELECT w.owner, w.client, w.weight FROM {s}.permit_waiters AS w
        WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name
          AND w.expires_at > v_now
        ORDER BY w.ticket
        LIMIT 256
    LOOP
        EXIT WHEN v_used + r.weight > v_limit;
        v_used := v_used + r.weight;
        IF r.client = p_client THEN
            v_mine := v_mine || r.owner;
        ELSE
            PERFORM pg_notify(p_channel, p_signal || E'\\n' || r.owner);
        END IF;
    END LOOP;
    RETURN v_mine;
END
$$
"""

# One attempt (lockyard.permits.PermitTable._acquire). Returns one row (fencing,
# retry_after_ms, limit_conflict): granted: the new token; refused: NULL and the ms until the
# first holder's lease ends (or, with no holder, the first waiter's lease); limit_conflict: the
# name's limit when p_limit differs (nothing changed). p_wait_ms NULL: the caller does not queue
# and counts every live waiter when p_count_queue, none otherwise.
_PERMIT_ACQUIRE = """
CREATE FUNCTION {s}.permit_acquire(
    p_prefix text, p_space text, p_name text, p_owner text, p_weight bigint, p_limit bigint,
    p_ttl_ms bigint, p_wait_ms bigint, p_count_queue boolean, p_client text
) RETURNS TABLE (fencing bigint, retry_after_ms bigint, limit_conflict bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_limit bigint;
    v_used bigint;
    v_ahead bigint := 0;
    v_ticket bigint;
    v_token bigint;
    v_now timestamptz;
    v_next timestamptz;
BEGIN
    INSERT INTO {s}.permit_sets (prefix, space, name, lim)
    VALUES (p_prefix, p_space, p_name, p_limit)
    ON CONFLICT (prefix, space, name) DO NOTHING;
    SELECT s.lim INTO v_limit FROM {s}.permit_sets AS s
    WHERE s.prefix = p_prefix AND s.space = p_space AND s.name = p_name
    FOR UPDATE;
    IF v_limit <> p_limit THEN
        RETURN QUERY SELECT NULL::bigint, NULL::bigint, v_limit;
        RETURN;
    END IF;
    v_now := clock_timestamp();
    DELETE FROM {s}.permit_holders AS h
    WHERE h.prefix = p_prefix AND h.space = p_space AND h.name = p_name
      AND h.expires_at <= v_now;
    SELECT coalesce(sum(h.weight), 0) INTO v_used FROM {s}.permit_holders AS h
    WHERE h.prefix = p_prefix AND h.space = p_space AND h.name = p_name;
    IF p_wait_ms IS NOT NULL OR p_count_queue THEN
        IF p_wait_ms IS NOT NULL THEN
            SELECT w.ticket INTO v_ticket FROM {s}.permit_waiters AS w
            WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name
              AND w.owner = p_owner;
        END IF;
        SELECT coalesce(sum(w.weight), 0) INTO v_ahead FROM {s}.permit_waiters AS w
        WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name
          AND w.expires_at > v_now AND w.owner <> p_owner
          AND (v_ticket IS NULL OR w.ticket < v_ticket);
    END IF;
    IF v_used + v_ahead + p_weight <= v_limit THEN
        UPDATE {s}.permit_sets AS s SET fencing = s.fencing + 1
        WHERE s.prefix = p_prefix AND s.space = p_space AND s.name = p_name
        RETURNING s.fencing INTO v_token;
        INSERT INTO {s}.permit_holders (prefix, space, name, owner, weight, fencing, expires_at)
        VALUES (p_prefix, p_space, p_name, p_owner, p_weight, v_token,
                v_now + p_ttl_ms * interval '1 millisecond');
        IF v_ticket IS NOT NULL THEN
            DELETE FROM {s}.permit_waiters AS w
            WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name
              AND w.owner = p_owner;
        END IF;
        RETURN QUERY SELECT v_token, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT min(h.expires_at) INTO v_next FROM {s}.permit_holders AS h
    WHERE h.prefix = p_prefix AND h.space = p_space AND h.name = p_name;
    IF v_next IS NULL THEN
        SELECT w.expires_at INTO v_next FROM {s}.permit_waiters AS w
        WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name
          AND w.expires_at > v_now AND w.owner <> p_owner
        ORDER BY w.ticket
        LIMIT 1;
    END IF;
    IF p_wait_ms IS NOT NULL THEN
        INSERT INTO {s}.permit_waiters (prefix, space, name, owner, client, weight, expires_at)
        VALUES (p_prefix, p_space, p_name, p_owner, p_client, p_weight,
                v_now + p_wait_ms * interval '1 millisecond')
        ON CONFLICT (prefix, space, name, owner) DO UPDATE SET expires_at = excluded.expires_at;
    END IF;
    RETURN QUERY SELECT NULL::bigint,
        greatest(0, ceil(extract(epoch FROM coalesce(v_next, v_now) - v_now) * 1000))::bigint,
        NULL::bigint;
END
$$
"""

# Release, and break (any caller may name any owner). Returns one row (released, wake):
# released when p_owner held a live permit (now removed, and the waiters that fit signalled),
# wake the owners among them waiting in p_client.
_PERMIT_RELEASE = """
CREATE FUNCTION {s}.permit_release(
    p_prefix text, p_space text, p_name text, p_owner text,
    p_channel text, p_signal text, p_client text
) RETURNS TABLE (released boolean, wake text[]) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM FROM {s}.permit_sets AS s
    WHERE s.prefix = p_prefix AND s.space = p_space AND s.name = p_name
    FOR UPDATE;
    DELETE FROM {s}.permit_holders AS h
    WHERE h.prefix = p_prefix AND h.space = p_space AND h.name = p_name
      AND h.owner = p_owner AND h.expires_at > clock_timestamp();
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, ARRAY[]::text[];
        RETURN;
    END IF;
    RETURN QUERY SELECT true,
        {s}.permit_signal(p_prefix, p_space, p_name, p_channel, p_signal, p_client);
END
$$
"""

# A waiter gives up: removes its entry; if it had one, signals the waiters that now fit.
# Returns the owners to wake in p_client.
_PERMIT_LEAVE = """
CREATE FUNCTION {s}.permit_leave(
    p_prefix text, p_space text, p_name text, p_owner text,
    p_channel text, p_signal text, p_client text
) RETURNS text[] LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM FROM {s}.permit_sets AS s
    WHERE s.prefix = p_prefix AND s.space = p_space AND s.name = p_name
    FOR UPDATE;
    DELETE FROM {s}.permit_waiters AS w
    WHERE w.prefix = p_prefix AND w.space = p_space AND w.name = p_name AND w.owner = p_owner;
    IF NOT FOUND THEN
        RETURN ARRAY[]::text[];
    END IF;
    RETURN {s}.permit_signal(p_prefix, p_space, p_name, p_channel, p_signal, p_client);
END
$$
"""

#: Migration 4's statements, in order.
MIGRATION_STATEMENTS: tuple[str, ...] = (
    *_TABLES,
    _PERMIT_SIGNAL,
    _PERMIT_ACQUIRE,
    _PERMIT_RELEASE,
    _PERMIT_LEAVE,
)

# Params: $1 prefix, $2 space, $3 name, $4 owner, $5 weight, $6 limit, $7 ttl ms, $8 waiter
# lease ms or NULL, $9 count the queue, $10 client id. Returns (fencing, retry_after_ms,
# limit_conflict), see permit_acquire.
ACQUIRE = (
    "SELECT * FROM {s}.permit_acquire($1, $2, $3, $4, $5::bigint, $6::bigint, $7::bigint, "
    "$8::bigint, $9, $10)"
)

# Params: $1 prefix, $2 space, $3 name, $4 owner, $5 ttl ms. Returns one row (true) if $4 held
# a live permit, its lease now reset to $5 from now; no row otherwise.
EXTEND = """
UPDATE {s}.permit_holders SET expires_at = clock_timestamp() + $5::bigint * interval '1 millisecond'
WHERE prefix = $1 AND space = $2 AND name = $3 AND owner = $4 AND expires_at > clock_timestamp()
RETURNING true
"""

# Params: $1 prefix, $2 space, $3 name, $4 owner. Returns (held).
IS_HELD = """
SELECT EXISTS (
    SELECT FROM {s}.permit_holders
    WHERE prefix = $1 AND space = $2 AND name = $3 AND owner = $4
      AND expires_at > clock_timestamp()
)
"""

# Params: $1 prefix, $2 space, $3 name, $4 owner, $5 channel, $6 signal name, $7 client id.
# Returns (released, wake), see permit_release.
RELEASE = "SELECT * FROM {s}.permit_release($1, $2, $3, $4, $5, $6, $7)"

# Params: as RELEASE. Returns (wake) the owners to wake in the caller.
LEAVE_QUEUE = "SELECT {s}.permit_leave($1, $2, $3, $4, $5, $6, $7)"

# Params: $1 prefix, $2 space. Returns (name, owner, fencing, expires_in_ms, weight, limit) of
# every live holder.
LIST_HELD = """
SELECT h.name, h.owner, h.fencing,
       greatest(1, ceil(extract(epoch FROM h.expires_at - clock_timestamp()) * 1000))::bigint,
       h.weight, s.lim
FROM {s}.permit_holders AS h
JOIN {s}.permit_sets AS s USING (prefix, space, name)
WHERE h.prefix = $1 AND h.space = $2 AND h.expires_at > clock_timestamp()
"""

# Params: none. Deletes expired holders and waiters of every prefix (attempts skip them
# already; this reclaims the rows of names nobody touches again). Returns the command status.
SWEEP = """
WITH holders AS (DELETE FROM {s}.permit_holders WHERE expires_at < now())
DELETE FROM {s}.permit_waiters WHERE expires_at < now()
"""


@dataclass(frozen=True, slots=True)
class PermitStatements:
    """The permit statements with the schema filled in."""

    acquire: str
    extend: str
    is_held: str
    release: str
    leave_queue: str
    list_held: str
    sweep: str


def render_permits(schema: str) -> PermitStatements:
    from .schema import quote_schema  # schema.py imports this module's migration

    s = quote_schema(schema)
    sources = {
        "acquire": ACQUIRE,
        "extend": EXTEND,
        "is_held": IS_HELD,
        "release": RELEASE,
        "leave_queue": LEAVE_QUEUE,
        "list_held": LIST_HELD,
        "sweep": SWEEP,
    }
    assert set(sources) == {f.name for f in fields(PermitStatements)}
    return PermitStatements(**{name: text.strip().format(s=s) for name, text in sources.items()})
