"""The PostgreSQL backend, on asyncpg: shared state and row-lease locks in one schema.

Every store and lock operation is one prepared statement, one round trip on a pooled
connection; time is the database's clock. The data layout, costs, waiter queues and failure
behaviour are described in docs/backends/postgres.md. The modules, by job:

- :mod:`.backend`: :class:`PostgresBackend` and :func:`open_backend`.
- :mod:`.store`, :mod:`.locks`: the store and the lock manager, one statement per operation.
- :mod:`.sql`: every statement and migration, as named constants.
- :mod:`.lean_pool`, :mod:`.pool`: the connections (first come, first served) and how an
  operation uses one.
- :mod:`.signals`: the LISTEN connection that wakes waiting acquires.
- :mod:`.migrations`, :mod:`.tls`, :mod:`.errors`: schema upgrades, connection arguments, and
  the one place driver errors are mapped.
"""

from __future__ import annotations

from .backend import GUARANTEES, PostgresBackend, open_backend
from .errors import BACKEND_NAME, translate_error
from .locks import PostgresLocks
from .migrations import (
    SETUP_TIMEOUT_S,
    migrate,
    migrate_connection,
    require_schema,
    schema_version,
)
from .pool import StatementPool
from .signals import ReleaseListener, release_channel
from .sql import LATEST_VERSION, quote_schema
from .store import PostgresStateStore, prefix_successor
from .tls import connect, connect_kwargs, ssl_setting

__all__ = [
    "BACKEND_NAME",
    "GUARANTEES",
    "LATEST_VERSION",
    "SETUP_TIMEOUT_S",
    "PostgresBackend",
    "PostgresLocks",
    "PostgresStateStore",
    "ReleaseListener",
    "StatementPool",
    "connect",
    "connect_kwargs",
    "migrate",
    "migrate_connection",
    "open_backend",
    "prefix_successor",
    "quote_schema",
    "release_channel",
    "require_schema",
    "schema_version",
    "ssl_setting",
    "translate_error",
]
