"""A fresh login to a store's backend with the binding's credentials and TLS settings.

A new workload's first step is to open a connection and authenticate; the operator's long-lived
connection authenticated once, long ago, so pinging it says nothing about that step (a password
changed on the server, a removed user, a replaced certificate or a new ``pg_hba.conf`` rule all
leave it working). The probe therefore logs in afresh at every interval:

- Redis: a new connection (TLS handshake if enabled), ``AUTH`` when credentials are set, ``PING``;
- Sentinel: a new connection to a Sentinel (its own credentials) asking
  ``SENTINEL GET-MASTER-ADDR-BY-NAME``, closed; then as Redis, to that master;
- Redis Cluster: a new connection to the first seed node that answers, ``AUTH``, ``CLUSTER
  INFO``: it fails unless the cluster's state is ``ok`` (the reason says which slots fail);
- PostgreSQL: ``asyncpg.connect`` (TLS per ``sslmode``, the password exchange), then close;
- DynamoDB: ``DescribeTable`` signed with the configured credentials, on a client that closes its
  HTTP connection after each call (so every check is a new TCP and TLS connection too).

Each check holds at most one extra connection, and only while it runs (costs measured in
``docs/operator.md``). Driver exceptions are raised as :class:`LoginFailed` with the driver's
error as its cause, so :func:`~lockyard_operator.classify.classify` still finds the reason
(``AuthenticationFailed``, ``TLSFailed``, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from lockyard.config import (
    BackendConfig,
    DynamoDBConfig,
    PostgresConfig,
    RedisClusterConfig,
    RedisConfig,
    RedisSentinelConfig,
    RedisTLS,
)
from lockyard.errors import BackendConnectionError, BackendError, StateError

#: ``application_name`` / client name the checks show on the server.
CLIENT_NAME = "lockyard-operator-probe"


class LoginFailed(BackendError):
    """A fresh login failed; ``__cause__`` is the driver's error (which decides the reason)."""

    @classmethod
    def caused_by(cls, message: str, cause: BaseException) -> LoginFailed:
        failure = cls(message)
        failure.__cause__ = cause
        return failure


class LoginCheck(Protocol):
    """Logs in afresh on each ``check()``; ``close()`` releases what it keeps between checks."""

    async def check(self) -> None: ...

    async def close(self) -> None: ...


def login_check(config: BackendConfig) -> LoginCheck:
    """The check for ``config``'s backend (drivers are imported on first use)."""
    if isinstance(config, RedisConfig):
        return RedisLogin(config)
    if isinstance(config, RedisSentinelConfig):
        return SentinelLogin(config)
    if isinstance(config, RedisClusterConfig):
        return ClusterLogin(config)
    if isinstance(config, PostgresConfig):
        return PostgresLogin(config)
    if isinstance(config, DynamoDBConfig):
        return DynamoDBLogin(config)
    return NoLogin()


class NoLogin:
    """The memory backend lives in each process: there is nothing to log in to."""

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- Redis and Sentinel ------------------------------------------------------------------------


class RedisEndpoints:
    """Logs in to Redis servers with one set of credentials: a new connection per command.

    The redis-py connection object of each address is kept (unconnected) between commands:
    it holds the TLS context, and building one loads the system CA store, about 40 ms of CPU,
    forty times the cost of the login itself. Each command still makes a new TCP connection
    and a full TLS handshake.
    """

    def __init__(
        self, username: str | None, password: str | None, tls: RedisTLS, timeout: float, db: int
    ) -> None:
        self._username = username
        self._password = password
        self._tls = tls
        self._timeout = timeout
        self._db = db
        self._connections: dict[tuple[str, int], Any] = {}

    async def command(self, host: str, port: int, *command: str) -> Any:
        """Connect (authenticating), send ``command``, disconnect; the reply."""
        connection = self._connections.get((host, port))
        if connection is None:
            connection = self._connections[host, port] = self._connection(host, port)
        try:
            await connection.connect()
            await connection.send_command(*command)
            return await connection.read_response()
        finally:
            await connection.disconnect()

    def _connection(self, host: str, port: int) -> Any:
        from redis.asyncio.connection import Connection, SSLConnection
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "db": self._db,
            "username": self._username,
            "password": self._password,
            "socket_connect_timeout": self._timeout,
            "socket_timeout": self._timeout,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            # No CLIENT SETINFO: two round trips that prove nothing about the credentials.
            "driver_info": None,
        }
        tls = self._tls
        if not tls.enabled:
            return Connection(**kwargs)
        return SSLConnection(
            **kwargs,
            ssl_ca_certs=tls.ca_file,
            ssl_certfile=tls.cert_file,
            ssl_keyfile=tls.key_file,
            ssl_cert_reqs="required" if tls.verify else "none",
            ssl_check_hostname=tls.verify,
        )


class RedisLogin:
    """New connection, ``AUTH`` (when credentials are set) and ``PING``.

    The ``PING`` matters without credentials too: a server that started requiring a password
    answers it with ``NOAUTH``.
    """

    def __init__(self, config: RedisConfig) -> None:
        self._config = config
        self._server = RedisEndpoints(
            config.username,
            _reveal(config.password),
            config.tls,
            config.operation_timeout,
            config.db,
        )

    async def check(self) -> None:
        config = self._config
        try:
            await self._server.command(config.host, config.port, "PING")
        except Exception as exc:
            from lockyard.backends.redis.errors import translate

            message = f"new connection to {config.host}:{config.port}: {exc}"
            raise LoginFailed(message) from _as_the_library_reads(exc, translate)

    async def close(self) -> None:
        return None


class SentinelLogin:
    """Ask a Sentinel (with the Sentinel credentials) for the master, then log in to it."""

    def __init__(self, config: RedisSentinelConfig) -> None:
        self._config = config
        timeout = config.operation_timeout
        self._sentinels = RedisEndpoints(
            config.sentinel_username, _reveal(config.sentinel_password), config.tls, timeout, 0
        )
        self._masters = RedisEndpoints(
            config.username, _reveal(config.password), config.tls, timeout, config.db
        )

    async def check(self) -> None:
        host, port = await self._master()
        try:
            await self._masters.command(host, port, "PING")
        except Exception as exc:
            from lockyard.backends.redis.errors import translate

            message = f"new connection to master {host}:{port}: {exc}"
            raise LoginFailed(message) from _as_the_library_reads(exc, translate)

    async def _master(self) -> tuple[str, int]:
        """The master's address from the first Sentinel that knows it.

        If none does, the error raised is the first from a Sentinel that was reached (a refused
        password says more than a Sentinel that is down), else the last.
        """
        config = self._config
        failures: list[tuple[bool, LoginFailed]] = []
        for sentinel in config.sentinels:
            where = f"sentinel {sentinel.host}:{sentinel.port}"
            try:
                reply = await self._sentinels.command(
                    sentinel.host,
                    sentinel.port,
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    config.master,
                )
            except Exception as exc:
                message = f"new connection to {where}: {exc}"
                failures.append((_reached(exc), LoginFailed.caused_by(message, exc)))
                continue
            if reply:
                return str(reply[0]), int(reply[1])
            unknown = f"{where} knows no master named {config.master!r}"
            failures.append((True, LoginFailed.caused_by(unknown, BackendConnectionError(unknown))))
        reached = [failure for was_reached, failure in failures if was_reached]
        raise reached[0] if reached else failures[-1][1]

    async def close(self) -> None:
        return None


class ClusterLogin:
    """Log in to the first seed node that answers and ask for the cluster's state."""

    def __init__(self, config: RedisClusterConfig) -> None:
        self._config = config
        self._nodes = RedisEndpoints(
            config.username, _reveal(config.password), config.tls, config.operation_timeout, 0
        )

    async def check(self) -> None:
        from lockyard.backends.redis.cluster_backend import check_cluster_state

        failures: list[tuple[bool, LoginFailed]] = []
        for node in self._config.nodes:
            where = f"cluster node {node.host}:{node.port}"
            try:
                reply = await self._nodes.command(node.host, node.port, "CLUSTER", "INFO")
            except Exception as exc:
                message = f"new connection to {where}: {exc}"
                failures.append((_reached(exc), LoginFailed.caused_by(message, exc)))
                continue
            info = dict(line.split(":", 1) for line in str(reply).splitlines() if ":" in line)
            try:
                check_cluster_state(info)
            except BackendConnectionError as exc:
                raise LoginFailed.caused_by(f"{where}: {exc}", exc) from exc
            return
        reached = [failure for was_reached, failure in failures if was_reached]
        raise reached[0] if reached else failures[-1][1]

    async def close(self) -> None:
        return None


def _reached(exc: BaseException) -> bool:
    """Whether a Sentinel or cluster node answered at all (refused, reset and timed out mean it
    did not)."""
    from redis.exceptions import AuthenticationError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    # redis-py's AuthenticationError is a ConnectionError, but it is the Sentinel's answer.
    if isinstance(exc, AuthenticationError):
        return True
    return not isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


# -- PostgreSQL --------------------------------------------------------------------------------


class PostgresLogin:
    """A new connection (startup, TLS per ``sslmode``, password exchange), closed at once.

    The TLS setting is made once and kept: it holds the loaded CA and client certificate.
    """

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config
        self._ssl: Any = None

    async def check(self) -> None:
        import asyncpg

        from lockyard.backends.postgres import ssl_setting
        from lockyard.backends.postgres.errors import translate_error

        config = self._config
        try:
            if self._ssl is None:
                self._ssl = ssl_setting(config)
            connection = await asyncpg.connect(
                host=config.host,
                port=config.port,
                user=config.user,
                password=_reveal(config.password),
                database=config.database,
                ssl=self._ssl,
                timeout=config.operation_timeout,
                server_settings={"application_name": CLIENT_NAME},
            )
        except Exception as exc:
            message = f"new connection to {config.host}:{config.port}: {exc}"
            raise LoginFailed(message) from _as_the_library_reads(exc, translate_error)
        await connection.close(timeout=config.operation_timeout)

    async def close(self) -> None:
        return None


def _as_the_library_reads(
    exc: Exception, translate: Callable[[BaseException], StateError | None]
) -> BaseException:
    """``exc``, behind the backend's own reading of it (``translate``) where that says
    "unreachable".

    A server shutting down or starting up refuses a login with an error of its own (PostgreSQL's
    SQLSTATE 57P03, "the database system is shutting down"; Redis's ``LOADING``), not a refused
    socket: the library reads it as a lost connection, and so must the probe, or a restart reads
    as a refusal. The driver's error stays in the chain, so TLS and authentication failures are
    still found first.
    """
    translated = translate(exc)
    if not isinstance(translated, BackendConnectionError):
        return exc
    translated.__cause__ = exc
    return translated


# -- DynamoDB ----------------------------------------------------------------------------------


@functools.cache
def _botocore_loader() -> Any:
    """One botocore data loader per process: parsing the service models is most of the cost
    of a new client, and they never change while the process runs."""
    from botocore.loaders import create_loader

    return create_loader()


class DynamoDBLogin:
    """``DescribeTable`` signed with the configured credentials.

    The client is kept between checks (creating one costs milliseconds of CPU), but it closes its
    HTTP connection after every call, so each check makes a new TCP and TLS connection and the
    store holds no idle connection for it.
    """

    def __init__(self, config: DynamoDBConfig) -> None:
        self._config = config
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def check(self) -> None:
        config = self._config
        try:
            client = await self._open()
            await client.describe_table(TableName=config.table)
        except Exception as exc:
            where = config.endpoint_url or f"region {config.region}"
            raise LoginFailed(f"DescribeTable {config.table} at {where}: {exc}") from exc

    async def _open(self) -> Any:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            config = self._config
            session = get_session()
            session.register_component("data_loader", _botocore_loader())
            keys: dict[str, str] = {}
            if config.access_key_id is not None and config.secret_access_key is not None:
                keys = {
                    "aws_access_key_id": config.access_key_id,
                    "aws_secret_access_key": config.secret_access_key.get_secret_value(),
                }
            client_config = AioConfig(
                max_pool_connections=1,
                connect_timeout=config.operation_timeout,
                read_timeout=config.operation_timeout,
                retries={"mode": "standard", "total_max_attempts": 1},
                # aiohttp refuses a keep-alive time together with force_close.
                connector_args={"force_close": True, "keepalive_timeout": None},
            )
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "dynamodb",
                    region_name=config.region,
                    endpoint_url=config.endpoint_url,
                    config=client_config,
                    **keys,
                )
            )
        return self._client

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


def _reveal(secret: Any) -> str | None:
    return None if secret is None else str(secret.get_secret_value())
