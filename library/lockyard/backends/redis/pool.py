"""How the Redis backend gets its connections: settings, TLS, and the command pool.

- :func:`connection_kwargs`: the settings of every connection (and why: no socket timeout, no
  retry).
- :class:`LeanCheckout`: the command pool. It serves waiters first come, first served, hands
  out a free connection directly when nobody waits, and once any of its connections is found
  dead it retires every connection opened before (each is closed and re-opened when next
  checked out), so a server restart costs at most one failed operation per caller, whatever
  the event loop has seen of the other sockets.
- :func:`single_server_clients`: the command client (its commands auto-pipelined,
  :mod:`.autopipeline`; its pool for pipelines and ``WAIT``) and the release-signal client of
  a ``redis://`` or ``rediss://`` backend (Sentinel's are in :mod:`.sentinel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lockyard.config import RedisConfig, RedisSentinelConfig

from .autopipeline import AutoPipeline, AutoPipelinedRedis, ConnectSettings, FixedAddress
from .generations import DEAD_SERVER, Generations
from .packing import PackedConnection, PackedSSLConnection

HEALTH_CHECK_INTERVAL_S = 30
#: Connections of the release-signal client: one subscription, and room for a re-subscription.
SIGNAL_POOL_SIZE = 4


def connection_kwargs(config: RedisConfig | RedisSentinelConfig) -> dict[str, Any]:
    """Settings every command and signal connection of a backend shares."""
    timeout = config.operation_timeout
    kwargs: dict[str, Any] = {
        "db": config.db,
        "username": config.username,
        "password": None if config.password is None else config.password.get_secret_value(),
        # No socket read/write timeout: the operation timeout (the runner's watchdog) bounds
        # every call, and a cancelled read disconnects the connection. With a socket timeout
        # redis-py wraps every send in asyncio.wait_for, which costs a task per command and,
        # on Python 3.11, can swallow a cancellation (cpython gh-86296).
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        # No retries: a script whose reply was lost may have run; re-sending it could apply it
        # twice. The caller gets BackendConnectionError and decides.
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
        "client_name": "lockyard",
    }
    return kwargs | tls_kwargs(config)


def tls_kwargs(config: RedisConfig | RedisSentinelConfig) -> dict[str, Any]:
    tls = config.tls
    if not tls.enabled:
        return {}
    return {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
        "ssl_check_hostname": tls.verify,
    }


class ReportsDeath(AbstractConnection):
    """A connection that tells its pool when it finds its server gone."""

    #: Set by the pool that made this connection (none: a pool that does not retire).
    generations: Generations | None = None
    #: The pool's generation when this connection was last checked out unconnected or retired
    #: (and so opened afresh).
    generation = 0

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        generations = self.generations
        # redis-py drops a connection from inside its own error handlers (reading, writing,
        # connecting, the check at checkout); the exception being handled tells a dead server
        # from a cancelled call or a pool being closed. Only a connection of the current
        # generation has news: an older one's death was expected.
        if generations is not None and self.generation == generations.current:
            cause = kwargs.get("error") or sys.exc_info()[1]
            if isinstance(cause, DEAD_SERVER):
                generations.current += 1
        await super().disconnect(*args, **kwargs)


class PooledConnection(ReportsDeath, PackedConnection):
    pass


class PooledSSLConnection(ReportsDeath, PackedSSLConnection):
    pass


def _observability_enabled() -> bool:
    try:
        from redis.observability.providers import get_observability_instance
    except ImportError:  # an older redis-py: nothing to keep in step with
        return False
    return bool(get_observability_instance().is_enabled())


class LeanCheckout(BlockingConnectionPool):
    """A blocking pool that serves waiters first come, first served, skips redis-py's
    bookkeeping on the hot path, and retires every connection opened before one found dead.

    Fairness: redis-py's blocking pool wakes a waiter through an ``asyncio.Condition``; the
    woken waiter must then queue again for the condition's lock, behind callers that arrived
    meanwhile, and when one of them took the connection it waits again at the back. With 64
    tasks on 16 connections some waiters lose that race for the whole run: their wait, up to
    the run's length, was the 250-425 ms p99 of ``make bench`` (docs/backends/redis.md,
    *Concurrency*). Here a released connection goes straight to the oldest waiter, and nobody
    takes a free connection while anyone waits.

    Lean: redis-py 8 records connection metrics and dispatches a "connection released" event
    on every checkout and return, through the condition and a lock; on the hot path that costs
    about as much as the rest of a ``GET``. When redis-py's observability is on (or a
    maintenance notification is being handled, which needs RESP3) the stock path runs instead.
    The released event only matters for streaming credential providers, which Lockyard does
    not use. The pool's own ``timeout`` is not applied: Lockyard passes ``None`` and bounds the
    wait with the operation timeout.

    Retiring (asyncpg's ``Pool.expire_connections()``, done lazily): after a server restart
    every pooled socket is dead, but one whose end the event loop has not processed yet still
    looks open, and each would fail one more operation. A connection of :class:`ReportsDeath`
    bumps the pool's generation when it finds its server gone; a connection of an older
    generation is closed at checkout and re-opened.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: redis-py's observability is off: the pool's fast paths, and auto-pipelining, run.
        self.lean = not _observability_enabled()
        self.generations = Generations()
        #: Callers waiting for a connection, oldest first; each is handed one directly.
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()

    def make_connection(self) -> AbstractConnection:
        connection: AbstractConnection = super().make_connection()  # type: ignore[no-untyped-call]
        if isinstance(connection, ReportsDeath):
            connection.generations = self.generations
        return connection

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        current = self.generations.current
        if isinstance(connection, ReportsDeath) and connection.generation != current:
            if connection.is_connected:
                await connection.disconnect()  # opened before a connection was found dead
            connection.generation = current  # connected afresh just below
        await super().ensure_connection(connection)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if not self.lean or self._in_maintenance:
            return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
        if self._waiters or not self.can_get_connection():
            connection = await self._wait_for_connection()
        else:
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _wait_for_connection(self) -> AbstractConnection:
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                await self.release(waiter.result())  # handed over as we were cancelled: pass on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def release(self, connection: AbstractConnection) -> None:
        if not self.lean:
            await super().release(connection)
            return
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # stays in use: the waiter's now
                return
        if self._in_maintenance:
            await super().release(connection)
            return
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)


def single_server_clients(config: RedisConfig) -> tuple[Redis, Redis]:
    """(commands, release signals) of one server: ``pool_size`` connections, and a few."""
    kwargs = connection_kwargs(config) | {"host": config.host, "port": config.port}
    connection_class = PooledSSLConnection if config.tls.enabled else PooledConnection
    pool = LeanCheckout(
        max_connections=config.pool_size,
        timeout=None,  # the operation timeout bounds the wait for a free connection
        connection_class=connection_class,
        **kwargs,
    )
    signal_pool = ConnectionPool(
        max_connections=SIGNAL_POOL_SIZE, connection_class=connection_class, **kwargs
    )
    pipeline = None
    if pool.lean:
        pipeline = AutoPipeline(
            ConnectSettings.of(config),
            FixedAddress(config.host, config.port),
            pool.generations,
            stale_after=config.operation_timeout / 2,
        )
    return AutoPipelinedRedis.over(pool, pipeline), Redis.from_pool(signal_pool)


async def command(connection: AbstractConnection, *args: Any) -> Any:
    """One command on a connection we hold (redis-py closes it on any read error)."""
    await connection.send_command(*args)
    return await connection.read_response()
