"""Redis Sentinel: finding the master, following it, and the fencing epoch that comes with it.

Sentinel is only a way to obtain the connection (redis-py models it as a connection pool): the
store, the locks and the scripts are the same as on one server. What a failover costs, measured:
docs/backends/redis.md, *What a failover does*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from lockyard._tasks import raise_if_cancelled
from lockyard.config import RedisSentinelConfig
from lockyard.signals import ReconnectingListener

from .autopipeline import AutoPipeline, AutoPipelinedRedis, ConnectSettings, MasterAddress
from .packing import PackedSentinelConnection, PackedSSLConnection
from .pool import SIGNAL_POOL_SIZE, LeanCheckout, ReportsDeath, connection_kwargs, tls_kwargs
from .signals import LISTEN_POLL_S, close_pubsub

logger = logging.getLogger(__name__)

#: How often the watch re-asks for the master when no ``+switch-master`` arrives.
SENTINEL_REFRESH_S = 2.0


class EpochSentinel(Sentinel):
    """redis-py's Sentinel client that also remembers each master's ``config-epoch``."""

    def __init__(self, sentinels: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self.epochs: dict[tuple[str, int], int] = {}

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """As redis-py's, recording the epoch that came with the address (one reply)."""
        errors = []
        for position, sentinel in enumerate(self.sentinels):
            try:
                masters = await sentinel.sentinel_masters()
            except (rx.ConnectionError, rx.TimeoutError) as exc:
                # By address, not redis-py's repr of the client: that names objects by their
                # memory address, so the message (and a status quoting it) changed every time.
                errors.append(f"{_address(sentinel)}: {exc}")
                continue
            state = cast("dict[str, dict[str, Any]]", masters).get(service_name)
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[position] = sentinel, self.sentinels[0]
                address = (str(state["ip"]), int(state["port"]))
                self.epochs[address] = int(state.get("config-epoch", 0))
                return address
        detail = f" : {', '.join(errors)}" if errors else ""
        raise MasterNotFoundError(f"No master found for {service_name!r}{detail}")


def _address(sentinel: Redis) -> str:
    """``host:port`` of one Sentinel client."""
    settings = sentinel.connection_pool.connection_kwargs
    return f"{settings.get('host')}:{settings.get('port')}"


class SentinelConnection(ReportsDeath, PackedSentinelConnection):
    """A master connection that knows the Sentinel epoch of the server it was opened to."""

    fencing_epoch = 0

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        pool = self.connection_pool
        address = await pool.get_master_address()
        self.fencing_epoch = pool.sentinel_manager.epochs.get(tuple(address), 0)
        await self.connect_to(address)  # type: ignore[no-untyped-call]


class SentinelSSLConnection(SentinelConnection, PackedSSLConnection):
    pass


class SentinelPool(SentinelConnectionPool, LeanCheckout):
    """Sentinel's master discovery with a pool that waits for a free connection.

    Two races of a failover are closed here: a discovery answered before the switch (or by a
    lagging sentinel) never moves the pool back to a master of an older epoch, and a
    connection that was opened to the old master while the pool moved is closed when it is
    checked out, so no command reaches a replaced master after the pool has moved.
    """

    async def get_master_address(self) -> tuple[str, int]:
        manager = self.sentinel_manager
        address: tuple[str, int] = await manager.discover_master(self.service_name)
        current = self.master_address
        if current is None or address == current:
            self.master_address = address
            return address
        if manager.epochs.get(address, 0) < manager.epochs.get(current, 0):
            return cast("tuple[str, int]", current)  # a stale answer: keep the newer master
        self.master_address = address
        await self.disconnect(inuse_connections=False)
        return address

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await super().ensure_connection(connection)
        master = self.master_address
        if master is not None and (connection.host, getattr(connection, "port", None)) != master:
            await connection.disconnect()
            await super().ensure_connection(connection)


class SentinelWatch(ReconnectingListener):
    """Moves the pools to a new master as soon as Sentinel announces it.

    Subscribes to ``+switch-master`` on one sentinel at a time (the next one if it fails) and
    re-asks for the master every ``SENTINEL_REFRESH_S`` in case a message was missed.
    """

    def __init__(
        self,
        sentinel: EpochSentinel,
        master: str,
        pools: Sequence[SentinelConnectionPool],
        on_switch: Callable[[], Awaitable[None]],
        timeout: float,
    ) -> None:
        super().__init__("lockyard-redis-sentinel-watch")
        self._sentinel = sentinel
        self._master = master
        self._pools = pools
        self._on_switch = on_switch
        self._timeout = timeout
        self._current: tuple[str, int] | None = None
        self._position = 0
        self.switches = 0

    @property
    def master(self) -> tuple[str, int] | None:
        """The master the pools use, as this watch last saw it."""
        return self._current

    async def follow(self) -> None:
        """Ask Sentinel for the master; if it moved, move the pools."""
        async with asyncio.timeout(self._timeout):
            address = await self._sentinel.discover_master(self._master)
        if self._current is None:
            self._current = address
            return
        if address == self._current:
            return
        logger.info(
            "redis sentinel: master %s moved %s -> %s", self._master, self._current, address
        )
        for pool in self._pools:
            # Idle connections to the old master close now; busy ones when they come back.
            await pool.get_master_address()  # type: ignore[no-untyped-call]
            await pool.disconnect(inuse_connections=False)
            await pool.update_active_connections_for_reconnect()  # type: ignore[no-untyped-call]
        self._current = address
        self.switches += 1
        await self._on_switch()

    async def listen(self) -> None:
        sentinels = self._sentinel.sentinels
        pubsub = sentinels[self._position % len(sentinels)].pubsub()
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe("+switch-master")
            raise_if_cancelled()
            self.listening()
            await self._follow_quietly()
            last = time.monotonic()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                )
                raise_if_cancelled()
                if (
                    message is not None and self._about_our_master(message)
                ) or time.monotonic() - last >= SENTINEL_REFRESH_S:
                    await self._follow_quietly()
                    last = time.monotonic()
        except Exception:
            self._position += 1  # the next attempt asks the next sentinel
            raise
        finally:
            await close_pubsub(pubsub)

    def _about_our_master(self, message: dict[str, Any]) -> bool:
        """``+switch-master <name> <old ip> <old port> <new ip> <new port>`` for our master?"""
        data = message["data"]
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return message["type"] == "message" and text.split(" ", 1)[0] == self._master

    async def _follow_quietly(self) -> None:
        try:
            await self.follow()
        except (rx.RedisError, OSError, TimeoutError) as exc:
            logger.debug("redis sentinel: no master right now: %r", exc)
        raise_if_cancelled()


def sentinel_clients(config: RedisSentinelConfig) -> tuple[Redis, Redis, EpochSentinel]:
    """(commands, release signals, the Sentinel client) of a ``redis+sentinel://`` backend."""
    kwargs = connection_kwargs(config)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": config.operation_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": config.sentinel_username,
        "password": (
            None
            if config.sentinel_password is None
            else config.sentinel_password.get_secret_value()
        ),
    }
    if config.tls.enabled:
        sentinel_kwargs |= {"ssl": True, **tls_kwargs(config)}
    sentinel = EpochSentinel(
        [(s.host, s.port) for s in config.sentinels], sentinel_kwargs=sentinel_kwargs
    )
    connection_class = SentinelSSLConnection if config.tls.enabled else SentinelConnection

    def pool(size: int) -> SentinelPool:
        return SentinelPool(  # type: ignore[no-untyped-call]
            config.master,
            sentinel,
            max_connections=size,
            timeout=None,
            connection_class=connection_class,
            is_master=True,
            **kwargs,
        )

    commands, signals = pool(config.pool_size), pool(SIGNAL_POOL_SIZE)
    pipeline = None
    if commands.lean:
        pipeline = AutoPipeline(
            ConnectSettings.of(config),
            MasterAddress(commands),
            commands.generations,
            stale_after=config.operation_timeout / 2,
        )
    return AutoPipelinedRedis.over(commands, pipeline), Redis.from_pool(signals), sentinel
