"""The one place redis-py (and socket) errors become Lockyard errors.

Most specific first, by class or, for replies redis-py has no class for, by the error code (the
first word of the reply). Refused credentials or commands are ``BackendError``; anything that
means "not now" (the connection, TLS, a demoted master, ``NOREPLICAS``, ``MASTERDOWN``,
``LOADING``, ``TRYAGAIN``, no master from Sentinel; on Redis Cluster ``CLUSTERDOWN``, a slot no
master serves, a slot map that cannot be read) is ``BackendConnectionError``.
"""

from __future__ import annotations

from redis import exceptions as rx
from redis.asyncio.sentinel import MasterNotFoundError

from lockyard.config import RedisClusterConfig, RedisConfig, RedisSentinelConfig
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    OperationTimeoutError,
    StateError,
    UnexpectedReplyError,
)

#: Error codes (the first word of a Redis error reply) that mean "not now", not "no".
UNAVAILABLE_CODES = frozenset({"NOREPLICAS", "MASTERDOWN", "LOADING", "TRYAGAIN"})


def _error_code(exc: rx.ResponseError) -> str:
    """The Redis error code: redis-py keeps it as the first word of codes it has no class for."""
    text = str(exc.args[0]) if exc.args else ""
    return text.split(" ", 1)[0]


def translate(exc: BaseException) -> StateError | None:
    """Map a redis-py (or socket) exception onto the Lockyard tree, most specific first."""
    if isinstance(exc, TimeoutError):
        return None  # the built-in: the operation timeout fired; the runner reports it
    if isinstance(
        exc,
        rx.AuthenticationError
        | rx.AuthorizationError
        | rx.AuthenticationWrongNumberOfArgsError
        | rx.NoPermissionError,
    ):
        return BackendError(f"redis refused the credentials or the command: {exc}")
    if isinstance(exc, rx.ReadOnlyError):
        return BackendConnectionError(
            f"redis: the server is a read-only replica (a failover demoted it): {exc}"
        )
    if isinstance(exc, rx.TimeoutError):
        return OperationTimeoutError(f"redis: {exc}")
    if isinstance(exc, MasterNotFoundError):
        return BackendConnectionError(f"redis sentinel: no master available: {exc}")
    if isinstance(exc, rx.ClusterDownError | rx.TryAgainError | rx.ClusterError):
        return BackendConnectionError(f"redis cluster: not serving now: {exc}")
    if isinstance(exc, rx.RedisClusterException):  # no slot map, a slot nobody serves
        # "cannot be connected" carries the last seed's error: refused credentials say more.
        cause = translate(exc.__cause__) if exc.__cause__ is not None else None
        return cause or BackendConnectionError(f"redis cluster: {exc}")
    if isinstance(exc, rx.InvalidResponse):  # a reply the RESP parser refused
        return UnexpectedReplyError(
            f"redis: expected a RESP reply, received bytes that are none: {exc}"
        )
    if isinstance(exc, rx.ConnectionError):
        return BackendConnectionError(f"redis: {exc}")
    if isinstance(exc, rx.ResponseError) and _error_code(exc) in UNAVAILABLE_CODES:
        return BackendConnectionError(f"redis: the server cannot serve writes now: {exc}")
    if isinstance(exc, rx.RedisError):
        return BackendError(f"redis: {exc}")
    if isinstance(exc, OSError):
        return BackendConnectionError(f"redis: {exc}")
    return None


def where(config: RedisConfig | RedisSentinelConfig | RedisClusterConfig) -> str:
    """The server of ``config``, as messages name it."""
    if isinstance(config, RedisSentinelConfig):
        return f"redis-sentinel master {config.master!r}"
    if isinstance(config, RedisClusterConfig):
        return "redis-cluster at " + ", ".join(f"{n.host}:{n.port}" for n in config.nodes)
    return f"redis at {config.host}:{config.port}"
