"""Auto-pipelining: the commands a handle's concurrent tasks issue share a few connections and
are written in batches (:mod:`.pipelined`), instead of each task checking out a connection.

Semantics are those of the pool: each operation is one command, replies come back in order,
the operation timeout bounds each call, and a failed connection fails exactly the operations
it carried (docs/backends/redis.md, *Auto-pipelining*). :class:`AutoPipeline` keeps the
connections to one server: new requests go to the first connection that is open and not
*heavy* (carrying a large request or reply), so under load one connection takes nearly all the
batches; others open only while the first is heavy. A connection of an older pool generation,
or (Sentinel) to a master the pool has left, is retired at the next choice.

:class:`ServerAddress` says where connections go: :class:`FixedAddress` (one server, or one
cluster node) or :class:`MasterAddress` (Sentinel's current master, with its fencing epoch).
:class:`AutoPipelinedRedis` is redis-py's client with ``execute_command`` sent this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.client import EMPTY_RESPONSE, NEVER_DECODE

from lockyard import lanes
from lockyard._tasks import stop_task
from lockyard.config import RedisConfig, RedisSentinelConfig

from .blocking import ThreadConnections
from .generations import DEAD_SERVER, Generations
from .pipelined import PipelinedConnection

#: The most connections one handle's auto-pipeline opens (more only while one is heavy).
MAX_CONNECTIONS = 4

#: Seconds a closing handle waits for the server to answer each socket's close (TLS's
#: close_notify: a loopback round trip) before it drops the socket instead.
CLOSE_GRACE = 0.25


class ServerAddress(Protocol):
    """Where the pipelined connections of one handle go."""

    def current(self) -> tuple[str, int] | None:
        """The address new connections would use now; ``None``: it never changes."""
        ...

    async def resolve(self) -> tuple[tuple[str, int], int]:
        """The address to connect to, and its fencing epoch."""
        ...


class FixedAddress:
    """One server (or one cluster node): always the same address, epoch 0."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def current(self) -> tuple[str, int] | None:
        return None

    async def resolve(self) -> tuple[tuple[str, int], int]:
        return self._address, 0


class MasterAddress:
    """Sentinel's master, as the handle's Sentinel pool follows it (and its config-epoch)."""

    def __init__(self, pool: SentinelConnectionPool) -> None:
        self._pool = pool

    def current(self) -> tuple[str, int] | None:
        return cast("tuple[str, int] | None", self._pool.master_address)

    async def resolve(self) -> tuple[tuple[str, int], int]:
        pool = self._pool
        address = cast("tuple[str, int]", await pool.get_master_address())  # type: ignore[no-untyped-call]
        address = (str(address[0]), int(address[1]))
        return address, pool.sentinel_manager.epochs.get(address, 0)


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """How to open and set up one connection (what redis-py's connection kwargs say)."""

    connect_timeout: float
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    tls: ssl.SSLContext | None = None
    check_hostname: bool = False

    @classmethod
    def of(cls, config: RedisConfig | RedisSentinelConfig) -> ConnectSettings:
        secret = config.password
        return cls(
            connect_timeout=config.operation_timeout,
            db=config.db,
            username=config.username,
            password=None if secret is None else secret.get_secret_value(),
            client_name="lockyard",
            tls=tls_context(config) if config.tls.enabled else None,
            check_hostname=config.tls.enabled and config.tls.verify,
        )

    def handshake(self) -> list[tuple[Any, ...]]:
        """The set-up commands, pipelined ahead of the first request (as redis-py sends them)."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            if self.username is not None:
                commands.append(("AUTH", self.username, self.password))
            else:
                commands.append(("AUTH", self.password))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


def tls_context(config: RedisConfig | RedisSentinelConfig) -> ssl.SSLContext:
    """The TLS settings redis-py's SSL connections get from the same config."""
    tls = config.tls
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.check_hostname = tls.verify
    context.verify_mode = ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class AutoPipeline:
    """The pipelined connections of one handle to one server."""

    def __init__(
        self,
        settings: ConnectSettings,
        address: ServerAddress,
        generations: Generations,
        *,
        stale_after: float,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._settings = settings
        self._address = address
        self._generations = generations
        self._stale_after = stale_after
        self._max = max_connections
        self._connections: list[PipelinedConnection] = []
        #: Retired connections still waiting for replies to requests in flight: they close
        #: themselves once answered, or with the handle (a paused server never answers).
        self._draining: set[PipelinedConnection] = set()
        self._openers: set[asyncio.Task[None]] = set()
        self._closed = False
        #: The calling threads' own sockets, for calls driven in a lane (lockyard.lanes): only
        #: to a fixed server (Sentinel's master moves: its handle serves no lanes).
        self._threads = (
            ThreadConnections(settings, address.address)
            if isinstance(address, FixedAddress)
            else None
        )

    @property
    def connections(self) -> list[PipelinedConnection]:
        """The connections in use, preferred first (tests and diagnostics read them)."""
        return list(self._connections)

    def pick(self) -> PipelinedConnection:
        """The connection the next request goes to (opening one if need be)."""
        connections = self._connections
        if connections:
            first = connections[0]
            if (
                not first.retired
                and not first.heavy
                and first.generation == self._generations.current
                and (first.address is None or self._address.current() in (None, first.address))
            ):
                return first
        return self._pick_slowly()

    def _pick_slowly(self) -> PipelinedConnection:
        if self._closed:
            raise rx.ConnectionError("the Redis handle was closed")
        generation = self._generations.current
        master = self._address.current()
        usable = []
        for connection in self._connections:
            if not connection.retired and (
                connection.generation != generation
                or (master is not None and connection.address not in (None, master))
            ):
                connection.retire()  # opened before a death, or to a master the pool left
            if not connection.retired:
                usable.append(connection)
            elif not connection.finished:
                self._draining.add(connection)
        self._connections = usable
        self._draining = {connection for connection in self._draining if not connection.finished}
        for connection in usable:
            if not connection.heavy:
                return connection
        if len(usable) < self._max:
            return self._open()
        return min(usable, key=lambda connection: connection.outstanding)

    def _open(self) -> PipelinedConnection:
        loop = asyncio.get_running_loop()
        connection = PipelinedConnection(
            loop,
            generation=self._generations.current,
            stale_after=self._stale_after,
            on_death=self._died,
        )
        self._connections.append(connection)
        opener = loop.create_task(self._connect(connection), name="lockyard-redis-connect")
        self._openers.add(opener)
        opener.add_done_callback(self._openers.discard)
        return connection

    async def _connect(self, connection: PipelinedConnection) -> None:
        settings = self._settings
        loop = asyncio.get_running_loop()
        where = "the server"
        try:
            async with asyncio.timeout(settings.connect_timeout):
                address, epoch = await self._address.resolve()
                connection.address, connection.fencing_epoch = address, epoch
                host, port = address
                where = f"{host}:{port}"
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=settings.tls,
                    server_hostname=host if settings.check_hostname else None,
                )
                replies = await asyncio.gather(
                    *connection.start_handshake(settings.handshake()), return_exceptions=True
                )
        except TimeoutError:
            connection.failed(rx.TimeoutError(f"Timeout connecting to {where}"), server_gone=True)
            return
        except asyncio.CancelledError:
            connection.failed(rx.ConnectionError("the Redis handle was closed"), server_gone=False)
            raise
        except OSError as exc:
            error = rx.ConnectionError(f"Error {exc.errno} connecting to {where}. {exc.strerror}.")
            # Kept as the cause (callers get copies that keep it): an ssl.SSLError there is how
            # the operator tells TLSFailed from an unreachable server.
            error.__cause__ = exc
            connection.failed(error, server_gone=True)
            return
        except Exception as exc:  # MasterNotFoundError, TLS, ...: the callers get it as it is
            connection.failed(exc, server_gone=isinstance(exc, DEAD_SERVER))
            return
        for reply in replies:
            if isinstance(reply, BaseException):
                connection.failed(reply, server_gone=isinstance(reply, DEAD_SERVER))
                return
        connection.opened()

    def _died(self, connection: PipelinedConnection, error: BaseException) -> None:
        """A connection found its server gone: retire every connection opened before."""
        generations = self._generations
        if connection.generation == generations.current and isinstance(error, DEAD_SERVER):
            generations.current += 1

    @property
    def serves_lanes(self) -> bool:
        """Whether a call driven in a lane does its I/O in its own thread (else on the loop)."""
        return self._threads is not None

    async def call(self, args: tuple[Any, ...]) -> Any:
        """Send one command on a pipelined connection; its reply (or error reply, raised)."""
        threads = self._threads
        if threads is not None and lanes.active():
            return threads.mine().call(args)
        connection = self.pick()
        future = connection.send(args)
        try:
            return await future
        except asyncio.CancelledError:
            connection.abandon(future)
            raise

    async def call_with_epoch(self, build: Callable[[int], tuple[Any, ...]]) -> Any:
        """Send the command ``build(epoch)``, epoch being that of the server it is sent to."""
        threads = self._threads
        if threads is not None and lanes.active():
            return threads.mine().call(build(0))  # a fixed server's epoch is 0
        connection = self.pick()
        if not connection.ready:
            await connection.wait_opened()
        future = connection.send(build(connection.fencing_epoch))
        try:
            return await future
        except asyncio.CancelledError:
            connection.abandon(future)
            raise

    def retire(self) -> None:
        """Take no new request on any connection (its server left); each closes once answered."""
        for connection in self._connections:
            connection.retire()
            if not connection.finished:
                self._draining.add(connection)
        self._connections = []

    @property
    def drained(self) -> bool:
        """Every connection closed: nothing is left to close."""
        return all(connection.closed for connection in (*self._connections, *self._draining))

    async def aclose(self) -> None:
        """Close every connection (what is in flight fails) and stop the openers."""
        self._closed = True
        if self._threads is not None:
            self._threads.close()
        for opener in list(self._openers):
            await stop_task(opener)
        connections, self._connections = [*self._connections, *self._draining], []
        self._draining = set()
        for connection in connections:
            connection.close()
        await asyncio.gather(*(connection.wait_closed(CLOSE_GRACE) for connection in connections))


class AutoPipelinedRedis(Redis):
    """redis-py's asyncio client whose commands go through an :class:`AutoPipeline`.

    Only ``execute_command`` changes: pipelines, pub/sub and explicit connection checkouts use
    the pool as before. Replies get redis-py's own response callbacks.
    """

    auto_pipeline: AutoPipeline | None = None

    @classmethod
    def over(cls, pool: Any, pipeline: AutoPipeline | None) -> AutoPipelinedRedis:
        """A client owning ``pool`` (closed with it), its commands sent through ``pipeline``
        (``None``: through the pool, as redis-py's client)."""
        client = cls(connection_pool=pool)
        client.auto_close_connection_pool = True
        client.auto_pipeline = pipeline
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        pipeline = self.auto_pipeline
        if pipeline is None or NEVER_DECODE in options:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        try:
            response = await pipeline.call(args)
        except rx.ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        callback = self.response_callbacks.get(args[0])
        if callback is None:
            return response
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        result = callback(response, **options)
        return await result if inspect.isawaitable(result) else result

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pipeline, self.auto_pipeline = self.auto_pipeline, None
        if pipeline is not None:
            with contextlib.suppress(Exception):
                await pipeline.aclose()
        await super().aclose(close_connection_pool)


def serves_lanes(client: object) -> bool:
    """Whether ``client``'s commands go through an :class:`AutoPipeline` that serves lanes (one
    fixed server: :mod:`lockyard.lanes`)."""
    return bool(getattr(getattr(client, "auto_pipeline", None), "serves_lanes", False))
