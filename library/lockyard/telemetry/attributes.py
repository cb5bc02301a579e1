"""What telemetry may say about a backend: its kind, host, port and database, never credentials.

Built once per connection from its config (never from the URL, which can carry a password),
and kept on the backend's :class:`~lockyard.operations.OperationRunner`. Sentinel deployments
report no ``server.address``: the master moves on failover, and the sentinels are not the
database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lockyard.telemetry import names

AttributeMap = dict[str, str | int | tuple[str, ...]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BackendAttributes:
    """``metric``: low-cardinality attributes for every instrument; ``span``: those plus detail."""

    metric: AttributeMap
    span: AttributeMap = field(default_factory=dict)


#: The attributes of the backend being opened, for round trips made before it is labelled.
OPENING: ContextVar[BackendAttributes | None] = ContextVar("lockyard_opening", default=None)


def for_backend_name(backend: str) -> BackendAttributes:
    """What is known without a config (a backend opened by hand, as tests do)."""
    base: AttributeMap = {
        names.BACKEND: backend,
        names.DB_SYSTEM_NAME: names.DB_SYSTEMS.get(backend, backend),
    }
    return BackendAttributes(metric=base, span=dict(base))


def for_config(config: Any) -> BackendAttributes:
    """The attributes of the backend ``config`` (a ``lockyard.config`` model) describes."""
    attributes = for_backend_name(config.backend)
    metric, span = dict(attributes.metric), dict(attributes.span)
    address = _server(config)
    if address is not None:
        metric[names.SERVER_ADDRESS], metric[names.SERVER_PORT] = address
    namespace = _namespace(config)
    if namespace is not None:
        span[names.DB_NAMESPACE] = namespace
    if config.backend == "dynamodb":
        span[names.DYNAMODB_TABLE_NAMES] = (str(config.table),)
    span.update(metric)
    span[names.STORE_PREFIX] = config.prefix
    return BackendAttributes(metric=metric, span=span)


def _server(config: Any) -> tuple[str, int] | None:
    if config.backend in ("redis", "postgresql"):
        return str(config.host), int(config.port)
    if config.backend == "dynamodb":
        if config.endpoint_url:
            # The pattern admits no user info; only host and port are kept, never the path.
            parts = urlsplit(config.endpoint_url)
            default_port = 443 if parts.scheme == "https" else 80
            return parts.hostname or "", parts.port or default_port
        return f"dynamodb.{config.region}.amazonaws.com", 443
    return None


def _namespace(config: Any) -> str | None:
    if config.backend in ("redis", "redis-sentinel"):
        return str(config.db)
    if config.backend == "redis-cluster":
        return "0"  # a cluster has one database
    if config.backend == "postgresql":
        return f"{config.database}|{config.schema_name}"
    return None


async def open_described(opener: Callable[[Any], Awaitable[T]], config: Any) -> T:
    """``await opener(config)``, its round trips (even those made while opening) labelled with
    :func:`for_config`'s attributes."""
    described = for_config(config)
    token = OPENING.set(described)
    try:
        backend = await opener(config)
    finally:
        OPENING.reset(token)
    for part in (getattr(backend, "store", None), getattr(backend, "locks", None)):
        runner = getattr(part, "_run", None)
        if runner is not None and hasattr(runner, "telemetry"):
            runner.telemetry = described
    return backend
