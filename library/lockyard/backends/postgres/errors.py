"""The PostgreSQL backend's error boundary: where asyncpg and socket errors become Lockyard's.

:func:`translate_error` is the only place that maps driver errors (by class, most specific
first); :func:`runner` applies it, with the operation timeout, around every operation.
"""

from __future__ import annotations

import functools

from asyncpg import exceptions as pg_errors

from lockyard.config import PostgresConfig
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    OperationTimeoutError,
    StateError,
)
from lockyard.operations import OperationRunner

BACKEND_NAME = "postgresql"


class ConnectTimeoutError(TimeoutError):
    """asyncpg gave up opening a connection within its ``timeout``.

    Raised by :func:`.tls.connect`, the one place that knows a timeout came from a connect (to
    asyncpg's other timeouts it is the same built-in class). A server that accepts no connection
    in time is unreachable for now, like one that refuses it: ``BackendConnectionError``, not an
    operation that ran too long (the operation around it, such as opening the backend, may have
    a longer timeout of its own, which did not run out).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no connection within {timeout:g}s")
        self.timeout = timeout


def translate_error(exc: BaseException, where: str = BACKEND_NAME) -> StateError | None:
    """Map an asyncpg or socket exception onto the Lockyard tree (by class, most specific first).

    ``None`` leaves the exception alone (it is not the driver's). Never inspects message text.
    """
    if isinstance(exc, StateError):
        return None
    detail = f"{where}: {type(exc).__name__}: {exc}"
    if isinstance(exc, pg_errors.QueryCanceledError):
        # statement_timeout (= operation_timeout) fired on the server.
        return OperationTimeoutError(f"{detail} (raise operation_timeout, or check the load)")
    if isinstance(
        exc,
        pg_errors.PostgresConnectionError
        | pg_errors.CannotConnectNowError
        | pg_errors.AdminShutdownError
        | pg_errors.CrashShutdownError
        | pg_errors.IdleSessionTimeoutError
        | pg_errors.DatabaseDroppedError,
    ):
        return BackendConnectionError(detail)
    if isinstance(
        exc,
        pg_errors.InvalidAuthorizationSpecificationError | pg_errors.InsufficientPrivilegeError,
    ):
        return BackendError(f"{detail} (check the user, password and grants)")
    if isinstance(exc, pg_errors.PostgresError):
        return BackendError(f"{detail} [SQLSTATE {exc.sqlstate}]")
    if isinstance(exc, pg_errors.ClientConfigurationError):
        return ConfigError(detail)
    if isinstance(exc, pg_errors.DataError):
        # Client-side: a value asyncpg cannot encode.
        return BackendError(detail)
    if isinstance(exc, pg_errors.InterfaceError):
        # A closed connection or pool ("connection is closed", "pool is closing").
        return BackendConnectionError(detail)
    if isinstance(exc, ConnectTimeoutError):
        return BackendConnectionError.not_answering(where, exc.timeout)
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return OperationTimeoutError(detail)
    if isinstance(exc, OSError | pg_errors.InternalClientError):
        # Refused, reset, unreachable, DNS, TLS handshake (ssl.SSLError), protocol breakage.
        return BackendConnectionError(detail)
    return None


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the server or the connection to it is gone (not a refused statement)."""
    return isinstance(translate_error(exc), BackendConnectionError)


def where(config: PostgresConfig) -> str:
    return f"postgresql at {config.host}:{config.port}/{config.database}"


def runner(config: PostgresConfig, timeout: float | None = None) -> OperationRunner:
    """Runs operations under ``timeout`` (default: the operation timeout), mapping errors."""
    translate = functools.partial(translate_error, where=where(config))
    return OperationRunner(BACKEND_NAME, timeout or config.operation_timeout, translate)
