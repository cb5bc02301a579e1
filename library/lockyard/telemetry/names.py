"""The names, units and attribute keys of everything Lockyard emits: docs/telemetry.md lists them.

Attribute keys follow OpenTelemetry's semantic conventions where one exists (``db.*``,
``server.*``, ``error.type``) and live under ``lockyard.`` otherwise. Metric attributes stay low
in cardinality: lock names and fencing tokens go on spans only, since a lock per invoice would
make one time series per invoice.
"""

from __future__ import annotations

from typing import Final

METER_NAME: Final = "lockyard"
TRACER_NAME: Final = "lockyard"

# -- metrics: (name, unit) ---------------------------------------------------------------------
OPERATION_DURATION: Final = "lockyard.operation.duration"
LOCK_WAIT_DURATION: Final = "lockyard.lock.wait.duration"
LOCK_HOLD_DURATION: Final = "lockyard.lock.hold.duration"
LOCK_ACQUISITIONS: Final = "lockyard.lock.acquisitions"
LOCK_CONTENTIONS: Final = "lockyard.lock.contentions"
LOCK_TIMEOUTS: Final = "lockyard.lock.timeouts"
LOCK_LOSSES: Final = "lockyard.lock.losses"
LOCK_BREAKS: Final = "lockyard.lock.breaks"
BACKEND_ERRORS: Final = "lockyard.backend.errors"
LOCKS_HELD: Final = "lockyard.lock.held"

UNITS: Final[dict[str, str]] = {
    OPERATION_DURATION: "s",
    LOCK_WAIT_DURATION: "s",
    LOCK_HOLD_DURATION: "s",
    LOCK_ACQUISITIONS: "{acquisition}",
    LOCK_CONTENTIONS: "{acquire}",
    LOCK_TIMEOUTS: "{acquire}",
    LOCK_LOSSES: "{lock}",
    LOCK_BREAKS: "{lock}",
    BACKEND_ERRORS: "{error}",
    LOCKS_HELD: "{lock}",
}

# -- spans -------------------------------------------------------------------------------------
#: A backend round trip is named after its operation (``get``, ``acquire``, ``extend``...), as
#: the database conventions name a span ``{db.operation.name}`` when there is no table.
SPAN_ACQUIRE: Final = "lockyard.lock.acquire"
SPAN_HOLD: Final = "lockyard.lock.hold"

# -- attribute keys ----------------------------------------------------------------------------
DB_SYSTEM_NAME: Final = "db.system.name"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_NAMESPACE: Final = "db.namespace"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
DYNAMODB_TABLE_NAMES: Final = "aws.dynamodb.table_names"
BACKEND: Final = "lockyard.backend"
STORE_PREFIX: Final = "lockyard.store.prefix"
OUTCOME: Final = "lockyard.outcome"
LOCK_NAME: Final = "lockyard.lock.name"
LOCK_FENCING_TOKEN: Final = "lockyard.lock.fencing_token"
LOCK_TTL_MS: Final = "lockyard.lock.ttl_ms"
LOCK_METHOD: Final = "lockyard.lock.method"
LOCK_END: Final = "lockyard.lock.end"
LOCK_DETECTED_BY: Final = "lockyard.lock.detected_by"

#: ``db.system.name`` per Lockyard backend: the registered values where they exist.
DB_SYSTEMS: Final[dict[str, str]] = {
    "redis": "redis",
    "redis-sentinel": "redis",
    "redis-cluster": "redis",
    "postgresql": "postgresql",
    "dynamodb": "aws.dynamodb",
    "memory": "lockyard.memory",
}
