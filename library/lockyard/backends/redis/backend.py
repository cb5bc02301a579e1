"""The Redis backend object: a store and a lock manager over one command pool, the release
subscription, the index sweeper and, on Sentinel, the watch that follows the master (Redis
Cluster's backend, in :mod:`.cluster_backend`, is this object over a cluster client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import cast

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from lockyard._tasks import raise_if_cancelled, stop_task
from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import RedisClusterConfig, RedisConfig, RedisSentinelConfig
from lockyard.errors import BackendConnectionError, OperationTimeoutError
from lockyard.guarantees import Guarantees
from lockyard.operations import OperationRunner

from .errors import translate, where
from .fenced import RedisFencedWrites
from .keys import KeyLayout
from .keyspace import Keyspace
from .locks import RedisLocks
from .permits import permit_managers
from .pool import single_server_clients
from .scripts import Scripts
from .sentinel import EpochSentinel, SentinelWatch, sentinel_clients
from .signals import PubSubListener, Subscriber
from .store import RedisStateStore

logger = logging.getLogger(__name__)

#: Seconds between background sweeps of expired index members, per prefix.
SWEEP_INTERVAL_S = 60.0

REDIS_GUARANTEES = Guarantees(
    mutual_exclusion=(
        "while the Redis server keeps its data: a lease is one key set NX with a millisecond "
        "expiry, owner-checked by Lua scripts"
    ),
    failover_safety=(
        "one server, no failover; a restart without persistence forgets leases and fencing "
        "counters (use appendonly with appendfsync always to keep them)"
    ),
    fencing="per-name counter incremented in the acquiring script; never reused while the "
    "server keeps its data",
    ttl_precision="1 ms",
    clock="the Redis server's clock (PEXPIREAT from TIME, PX leases)",
    fifo_waiters=True,
)

SENTINEL_GUARANTEES = Guarantees(
    mutual_exclusion=(
        "while the master keeps its data; replication is asynchronous, so a lease acquired "
        "just before a failover can be missing on the new master and two holders can overlap"
    ),
    failover_safety=(
        "a failover can lose locks and writes the old master acknowledged before Sentinel "
        "announced the new one (asynchronous replication; wait_replicas keeps leases); "
        "clients move to the new master as soon as Sentinel announces it"
    ),
    fencing=(
        "token = Sentinel config-epoch << 40 | per-name counter: every acquisition on a newer "
        "master outranks every token of an older one, so the protected resource can reject "
        "the stale holder"
    ),
    ttl_precision="1 ms",
    clock="the master's clock (PEXPIREAT from TIME, PX leases)",
    fifo_waiters=True,
)


class RedisBackend:
    """One store and one lock manager over a connection pool, plus background tasks."""

    #: Seconds between background sweeps of expired index members (class attribute so tests
    #: and benchmarks can change it before connecting).
    sweep_interval_s: float = SWEEP_INTERVAL_S

    def __init__(
        self,
        name: str,
        config: RedisConfig | RedisSentinelConfig | RedisClusterConfig,
        client: Redis,
        signal_client: Subscriber,
        sentinel: EpochSentinel | None = None,
        clock: Clock = SYSTEM_CLOCK,
        *,
        layout: KeyLayout | None = None,
        keyspace: Keyspace | None = None,
        guarantees: Guarantees | None = None,
    ) -> None:
        self.name = name
        self.guarantees = guarantees or (
            SENTINEL_GUARANTEES if sentinel is not None else REDIS_GUARANTEES
        )
        self.config = config
        self.client = client
        self._signal_client = signal_client
        self._sentinel = sentinel
        self._master = config.master if isinstance(config, RedisSentinelConfig) else ""
        self._timeout = config.operation_timeout
        self._run = OperationRunner(name, config.operation_timeout, translate)
        self.layout = layout or KeyLayout(config.prefix)
        self.scripts = Scripts(client)
        self.signals = PubSubListener(signal_client, self.layout.release_channel, self._timeout)
        self.store = RedisStateStore(self._run, client, self.layout, self.scripts, keyspace)
        self.locks = RedisLocks(
            self._run,
            client,
            self.layout,
            self.scripts,
            self.signals,
            wait_replicas=config.wait_replicas,
            wait_timeout_ms=max(1, int(config.operation_timeout * 500)),
            clock=clock,
            keyspace=keyspace,
        )
        self.semaphores, self.rwlocks = permit_managers(
            self._run, client, self.layout, self.signals, keyspace=keyspace, clock=clock
        )
        self.store.fenced_writes = RedisFencedWrites(client, self.layout)
        self.sentinel_watch: SentinelWatch | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check the server answers (and the credentials work), load the scripts, start tasks."""
        await self.first_contact(self.scripts.load())
        if self._sentinel is not None:
            pools = [
                cast(SentinelConnectionPool, self.client.connection_pool),
                cast(SentinelConnectionPool, cast(Redis, self._signal_client).connection_pool),
            ]
            watch = SentinelWatch(
                self._sentinel, self._master, pools, self.signals.restart, self._timeout
            )
            with contextlib.suppress(rx.RedisError, OSError, TimeoutError):
                await watch.follow()
            self.sentinel_watch = watch
            watch.start()
        self.start_sweeper()

    async def first_contact(self, opening: Awaitable[object]) -> None:
        """Run the first request of a handle being opened. A server that takes the connection
        but does not answer within the operation timeout is unreachable for now, as on every
        backend (``BackendConnectionError.not_answering``)."""
        try:
            await self._run("connect", opening)
        except OperationTimeoutError as exc:
            raise BackendConnectionError.not_answering(where(self.config), self._timeout) from exc

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lockyard-redis-sweep")

    async def sweep(self, *, force: bool = True) -> int:
        """One sweep of expired index members; unless ``force``, only if no other client of
        this prefix swept within the interval. Returns how many members it examined."""
        if not force:
            interval_ms = max(1, int(self.sweep_interval_s * 1000))
            async with asyncio.timeout(self._timeout):
                won = await self.client.set(
                    self.layout.sweep_lease, secrets.token_hex(8), nx=True, px=interval_ms
                )
            if not won:
                return 0
        return await self.store.sweep(timeout=self._timeout)

    async def _sweep_forever(self) -> None:
        while True:
            interval = self.sweep_interval_s
            # Spread the clients of one prefix over the interval.
            await asyncio.sleep(interval * (0.5 + secrets.randbelow(1000) / 1000))
            try:
                await self.sweep(force=False)
            except (rx.RedisError, OSError, TimeoutError) as exc:
                logger.debug("redis: background sweep failed, will retry: %r", exc)
            raise_if_cancelled()

    def colocated_name(self, name: str, key: str, guard: str) -> str:
        """``name`` itself on one server; on a cluster, a name whose keys share ``key``'s slot
        (:meth:`.keys.KeyLayout.name_beside`), for ``Connection.colocated_name``."""
        return self.layout.name_beside(guard, name, key)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._run("ping", self.client.ping())
        return time.perf_counter() - started

    async def server_version(self) -> str:
        info = await self._run("server_version", self.client.info("server"))
        return f"Redis {info.get('redis_version', 'unknown')}"

    async def close(self) -> None:
        self._run.close()
        if self.sentinel_watch is not None:
            await self.sentinel_watch.close()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            await stop_task(sweeper)
        await self.signals.close()
        await self.client.aclose()
        await self._signal_client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


async def open_backend(
    config: RedisConfig | RedisSentinelConfig | RedisClusterConfig,
) -> RedisBackend:
    """Open a Redis (Sentinel, Cluster) backend: pools, scripts loaded, background tasks
    running."""
    if isinstance(config, RedisClusterConfig):
        from .cluster_backend import open_cluster_backend  # it builds on this module

        return await open_cluster_backend(config)
    if isinstance(config, RedisSentinelConfig):
        client, signal_client, sentinel = sentinel_clients(config)
        backend = RedisBackend("redis-sentinel", config, client, signal_client, sentinel)
    else:
        client, signal_client = single_server_clients(config)
        backend = RedisBackend("redis", config, client, signal_client)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend
