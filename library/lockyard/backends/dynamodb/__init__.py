"""The DynamoDB backend: one table, conditional writes, strongly consistent reads (aioboto3).

URL: ``dynamodb://[KEY_ID:SECRET@]TABLE?region=R&endpoint_url=URL&prefix=P&create_table=true``.
Credentials come from the standard AWS chain unless the URL or
:class:`~lockyard.config.DynamoDBConfig` gives a key pair. The data layout, the cost of each
operation, time, lock safety and failure behaviour are described in docs/backends/dynamodb.md.
The modules, by job:

- :mod:`.backend`: :class:`DynamoDBBackend` and :func:`open_backend`.
- :mod:`.store`, :mod:`.locks`: the store and the lock manager.
- :mod:`.layout`: the table definition and every expression, as named constants.
- :mod:`.table`: creating, checking and waiting for the table; native TTL.
- :mod:`.client`, :mod:`.items`: requests on the table, and how values live in items.
- :mod:`.throttling`, :mod:`.errors`: re-sending throttled requests, and the one place driver
  errors are mapped.
"""

from __future__ import annotations

from .backend import GUARANTEES, DynamoDBBackend, client_config, open_backend
from .client import ConditionFailed, TableClient
from .errors import THROTTLING_CODES, error_code, make_translate
from .locks import DynamoDBLocks
from .store import DynamoDBStateStore
from .table import check_layout, prepare_table
from .throttling import THROTTLE_BASE_S, THROTTLE_CAP_S, is_throttling, throttle_delays

__all__ = [
    "GUARANTEES",
    "THROTTLE_BASE_S",
    "THROTTLE_CAP_S",
    "THROTTLING_CODES",
    "ConditionFailed",
    "DynamoDBBackend",
    "DynamoDBLocks",
    "DynamoDBStateStore",
    "TableClient",
    "check_layout",
    "client_config",
    "error_code",
    "is_throttling",
    "make_translate",
    "open_backend",
    "prepare_table",
    "throttle_delays",
]
