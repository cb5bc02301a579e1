"""The versioned schema of the PostgreSQL backend: its migrations, in order, and their bookkeeping.

``{s}`` stands for the quoted schema name (:func:`quote_schema`); :func:`migration_statements`
fills it in. :func:`lockyard.backends.postgres.migrations.migrate_connection` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockyard.store import MAX_INDEX_TIMESTAMP_MS

from .permits import MIGRATION_STATEMENTS as PERMIT_TABLES

LATEST_VERSION = 4


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
    Migration(
        4,
        "semaphores and read-write locks (permit tables, their queues and functions)",
        PERMIT_TABLES,  # the tables and why they need functions: sql/permits.py
    ),
)


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier (the config already restricts it to [a-z0-9_])."""
    return '"' + schema.replace('"', '""') + '"'


def migration_statements(schema: str, migration: Migration) -> list[str]:
    s = quote_schema(schema)
    return [statement.strip().format(s=s) for statement in migration.statements]
