"""SQL of the PostgreSQL backend: the versioned schema migrations and one statement per operation.

Every statement is a named constant whose comment gives its parameters and what it returns:
the migrations in :mod:`.schema`, the store's statements in :mod:`.store`, the locks' in
:mod:`.locks`. ``{s}`` stands for the quoted schema name; :func:`render` fills it in once per
backend, so each statement's text is constant and asyncpg's per-connection prepared-statement
cache always hits.

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

from .locks import (
    ACQUIRE,
    ACQUIRE_UNQUEUED,
    BREAK,
    EXTEND,
    HOLDER,
    IS_HELD,
    LEAVE_QUEUE,
    LIST_HELD,
    RELEASE,
    SWEEP_WAITERS,
)
from .schema import (
    CREATE_VERSION_TABLE,
    CURRENT_VERSION,
    LATEST_VERSION,
    MIGRATION_LOCK,
    MIGRATIONS,
    RECORD_VERSION,
    VERSION_TABLE_EXISTS,
    Migration,
    migration_statements,
    quote_schema,
)
from .store import (
    CHECK_AND_SET,
    COMPARE_AND_SWAP,
    DELETE,
    GET,
    GET_VERSIONED,
    INCREMENT,
    INDEX_ADD,
    INDEX_DUE,
    INDEX_REMOVE,
    PURGE,
    SCAN_KEYS,
    SCAN_KEYS_BY_KIND,
    SET,
    SWEEP_EXPIRED,
)

__all__ = [
    "ACQUIRE",
    "ACQUIRE_UNQUEUED",
    "BREAK",
    "CHECK_AND_SET",
    "COMPARE_AND_SWAP",
    "CREATE_VERSION_TABLE",
    "CURRENT_VERSION",
    "DELETE",
    "EXTEND",
    "GET",
    "GET_VERSIONED",
    "HOLDER",
    "INCREMENT",
    "INDEX_ADD",
    "INDEX_DUE",
    "INDEX_REMOVE",
    "IS_HELD",
    "LATEST_VERSION",
    "LEAVE_QUEUE",
    "LIST_HELD",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "PING",
    "PURGE",
    "RECORD_VERSION",
    "RELEASE",
    "SCAN_KEYS",
    "SCAN_KEYS_BY_KIND",
    "SERVER_VERSION",
    "SET",
    "SWEEP_EXPIRED",
    "SWEEP_WAITERS",
    "VERSION_TABLE_EXISTS",
    "Migration",
    "Statements",
    "migration_statements",
    "quote_schema",
    "render",
]

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
    acquire_unqueued: str
    extend: str
    release: str
    break_: str
    leave_queue: str
    sweep_waiters: str
    is_held: str
    list_held: str
    holder: str
    current_version: str
    record_version: str
    create_version_table: str


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
        "acquire_unqueued": ACQUIRE_UNQUEUED,
        "extend": EXTEND,
        "release": RELEASE,
        "break_": BREAK,
        "leave_queue": LEAVE_QUEUE,
        "sweep_waiters": SWEEP_WAITERS,
        "is_held": IS_HELD,
        "list_held": LIST_HELD,
        "holder": HOLDER,
        "current_version": CURRENT_VERSION,
        "record_version": RECORD_VERSION,
        "create_version_table": CREATE_VERSION_TABLE,
    }
    assert set(sources) == {f.name for f in fields(Statements)}
    return Statements(**{name: text.strip().format(s=s) for name, text in sources.items()})
