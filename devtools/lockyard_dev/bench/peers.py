"""Peer lock libraries a Python team would otherwise pick, wrapped as lock-cycle handles.

Each ``Peer`` opens ``workers`` handles on one lock name against the same server Lockyard uses,
with the library's defaults except the lease (``LOCK_TTL_S``) and the wait limit
(``ACQUIRE_TIMEOUT_S``). ``waits`` says how the library waits for a held lock, which explains
most of its contended figures. Blocking libraries are run one thread per worker.

Peer libraries are optional (``lockyard-dev[bench]``); each is imported by name when used, and a
missing or broken one is reported with its exact error and skipped, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from lockyard.config import BackendConfig, PostgresConfig, RedisClusterConfig, RedisConfig
from lockyard_dev.bench.lock_cycles import ACQUIRE_TIMEOUT_S, LOCK_TTL_S, AsyncHandle, SyncHandle
from lockyard_dev.bench.sync_peers import SYNC_PEER, open_lockyard_sync, open_redis_py_sync

#: How often the hand-written ``pg_try_advisory_lock`` loop retries (redis-py's default sleep).
TRY_LOCK_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class AsyncHandles:
    handles: list[AsyncHandle]


@dataclass(frozen=True, slots=True)
class SyncHandles:
    handles: list[SyncHandle]


Handles = AsyncHandles | SyncHandles
Opener = Callable[[BackendConfig, str, int], AbstractAsyncContextManager[Handles]]


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    label: str
    backend: str
    #: The pip requirement that brings it (what the ``bench`` extra lists); empty: stdlib.
    requirement: str
    modules: tuple[str, ...]
    waits: str
    open: Opener

    def check_import(self) -> str | None:
        """``None`` if the library imports, else the exact error (``Type: message``)."""
        for module in self.modules:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    importlib.import_module(module)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
        return None


def _module(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def _redis(config: BackendConfig) -> RedisConfig:
    if not isinstance(config, RedisConfig):
        raise TypeError(f"a Redis peer needs a redis:// target, got {config.backend}")
    return config


def _postgres(config: BackendConfig) -> PostgresConfig:
    if not isinstance(config, PostgresConfig):
        raise TypeError(f"a PostgreSQL peer needs a postgresql:// target, got {config.backend}")
    return config


def _redis_kwargs(config: RedisConfig) -> dict[str, Any]:
    password = config.password.get_secret_value() if config.password else None
    return {
        "host": config.host,
        "port": config.port,
        "db": config.db,
        "username": config.username,
        "password": password,
    }


def _advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


# -- in-process reference --------------------------------------------------------------------
class _AsyncioLockHandle:
    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def acquire(self) -> bool:
        await self._lock.acquire()
        return True

    async def release(self) -> None:
        self._lock.release()


@contextlib.asynccontextmanager
async def _open_asyncio_lock(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    lock = asyncio.Lock()
    yield AsyncHandles([_AsyncioLockHandle(lock) for _ in range(workers)])


# -- redis-py's asyncio Lock -----------------------------------------------------------------
class _RedisPyLockHandle:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    async def acquire(self) -> bool:
        return bool(await self._lock.acquire())

    async def release(self) -> None:
        await self._lock.release()


@contextlib.asynccontextmanager
async def _open_redis_py(config: BackendConfig, name: str, workers: int) -> AsyncIterator[Handles]:
    from redis.asyncio import Redis

    client = Redis(**_redis_kwargs(_redis(config)))
    try:
        yield AsyncHandles(
            [
                _RedisPyLockHandle(
                    client.lock(name, timeout=LOCK_TTL_S, blocking_timeout=ACQUIRE_TIMEOUT_S)
                )
                for _ in range(workers)
            ]
        )
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _open_redis_py_cluster(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    if not isinstance(config, RedisClusterConfig):
        raise TypeError(f"a Redis Cluster peer needs a redis+cluster:// target, got {config}")
    password = config.password.get_secret_value() if config.password else None
    client = RedisCluster(
        startup_nodes=[ClusterNode(node.host, node.port) for node in config.nodes],
        username=config.username,
        password=password,
    )
    try:
        await client.initialize()
        yield AsyncHandles(
            [
                _RedisPyLockHandle(
                    client.lock(name, timeout=LOCK_TTL_S, blocking_timeout=ACQUIRE_TIMEOUT_S)
                )
                for _ in range(workers)
            ]
        )
    finally:
        await client.aclose()


# -- python-redis-lock -----------------------------------------------------------------------
class _SyncLockHandle:
    """Any blocking lock with ``acquire(blocking=True, timeout=...)`` and ``release()``."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=True, timeout=ACQUIRE_TIMEOUT_S))

    def release(self) -> None:
        self._lock.release()


@contextlib.asynccontextmanager
async def _open_python_redis_lock(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    redis_lock = _module("redis_lock")
    import redis

    client = redis.Redis(**_redis_kwargs(_redis(config)))
    try:
        yield SyncHandles(
            [
                _SyncLockHandle(redis_lock.Lock(client, name, expire=int(LOCK_TTL_S)))
                for _ in range(workers)
            ]
        )
    finally:
        client.close()


# -- pottery ---------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _open_pottery_redlock(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    pottery = _module("pottery")
    import redis

    client = redis.Redis(**_redis_kwargs(_redis(config)))
    try:
        yield SyncHandles(
            [
                _SyncLockHandle(
                    pottery.Redlock(key=name, masters={client}, auto_release_time=LOCK_TTL_S)
                )
                for _ in range(workers)
            ]
        )
    finally:
        client.close()


class _PotteryAsyncHandle:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    async def acquire(self) -> bool:
        return bool(await self._lock.acquire(blocking=True, timeout=ACQUIRE_TIMEOUT_S))

    async def release(self) -> None:
        await self._lock.release()


@contextlib.asynccontextmanager
async def _open_pottery_aioredlock(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    pottery = _module("pottery")
    from redis.asyncio import Redis

    client = Redis(**_redis_kwargs(_redis(config)))
    try:
        yield AsyncHandles(
            [
                _PotteryAsyncHandle(
                    pottery.AIORedlock(key=name, masters={client}, auto_release_time=LOCK_TTL_S)
                )
                for _ in range(workers)
            ]
        )
    finally:
        await client.aclose()


# -- aioredlock ------------------------------------------------------------------------------
class _AioredlockHandle:
    def __init__(self, manager: Any, error: type[Exception], name: str) -> None:
        self._manager = manager
        self._error = error
        self._name = name
        self._lock: Any = None

    async def acquire(self) -> bool:
        # lock() gives up after its retry_count (3) attempts; a caller that needs the lock
        # calls it again, as here, until the wait limit.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACQUIRE_TIMEOUT_S
        while loop.time() < deadline:
            try:
                self._lock = await self._manager.lock(self._name, lock_timeout=LOCK_TTL_S)
                return True
            except self._error:
                continue
        return False

    async def release(self) -> None:
        await self._manager.unlock(self._lock)


@contextlib.asynccontextmanager
async def _open_aioredlock(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    aioredlock = _module("aioredlock")
    redis_config = _redis(config)
    address: dict[str, Any] = {
        "host": redis_config.host,
        "port": redis_config.port,
        "db": redis_config.db,
    }
    if redis_config.password is not None:
        address["password"] = redis_config.password.get_secret_value()
    manager = aioredlock.Aioredlock([address])
    try:
        yield AsyncHandles(
            [_AioredlockHandle(manager, aioredlock.LockError, name) for _ in range(workers)]
        )
    finally:
        await manager.destroy()


# -- tooz ------------------------------------------------------------------------------------
class _ToozHandle:
    def __init__(self, lock: Any, blocking: bool | float) -> None:
        self._lock = lock
        self._blocking = blocking

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=self._blocking))

    def release(self) -> None:
        self._lock.release()


def _tooz_url(config: BackendConfig) -> tuple[str, bool | float]:
    """The tooz backend URL for ``config``, and the ``blocking`` argument its locks accept."""
    if isinstance(config, RedisConfig):
        auth = ""
        if config.password is not None:
            auth = f"{config.username or ''}:{config.password.get_secret_value()}@"
        return f"redis://{auth}{config.host}:{config.port}?db={config.db}", ACQUIRE_TIMEOUT_S
    pg = _postgres(config)
    auth = pg.user + (f":{pg.password.get_secret_value()}" if pg.password else "")
    # tooz's PostgreSQL lock rejects a timeout: blocking=True waits in pg_advisory_lock.
    return f"postgresql://{auth}@{pg.host}:{pg.port}?dbname={pg.database}", True


@contextlib.asynccontextmanager
async def _open_tooz(config: BackendConfig, name: str, workers: int) -> AsyncIterator[Handles]:
    coordination = _module("tooz.coordination")
    url, blocking = _tooz_url(config)
    coordinators: list[Any] = []
    try:
        with warnings.catch_warnings():
            # tooz 9 deprecates its PostgreSQL driver; it still ships and works.
            warnings.simplefilter("ignore", DeprecationWarning)
            for number in range(workers):
                coordinator = coordination.get_coordinator(url, f"bench-{number}".encode())
                await asyncio.to_thread(coordinator.start)
                coordinators.append(coordinator)
        yield SyncHandles([_ToozHandle(c.get_lock(name.encode()), blocking) for c in coordinators])
    finally:
        for coordinator in coordinators:
            await asyncio.to_thread(coordinator.stop)


# -- PostgreSQL advisory locks through asyncpg -----------------------------------------------
ADVISORY_LOCK = "SELECT pg_advisory_lock($1)"  # $1: bigint key; waits in the server's queue
ADVISORY_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"  # $1: bigint key; returns held or not
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock($1)"  # $1: bigint key; returns whether it was held


class _AdvisoryHandle:
    """A session advisory lock: each worker holds its own connection, as the lock requires."""

    def __init__(self, connection: Any, key: int, poll: bool) -> None:
        self._connection = connection
        self._key = key
        self._poll = poll

    async def acquire(self) -> bool:
        if not self._poll:
            await self._connection.fetchval(ADVISORY_LOCK, self._key, timeout=ACQUIRE_TIMEOUT_S)
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACQUIRE_TIMEOUT_S
        while True:
            if await self._connection.fetchval(ADVISORY_TRY_LOCK, self._key):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(TRY_LOCK_POLL_S)

    async def release(self) -> None:
        await self._connection.fetchval(ADVISORY_UNLOCK, self._key)


def _open_advisory(poll: bool) -> Opener:
    @contextlib.asynccontextmanager
    async def open_(config: BackendConfig, name: str, workers: int) -> AsyncIterator[Handles]:
        import asyncpg

        pg = _postgres(config)
        password = pg.password.get_secret_value() if pg.password else None
        connections: list[Any] = []
        try:
            for _ in range(workers):
                connections.append(
                    await asyncpg.connect(
                        host=pg.host,
                        port=pg.port,
                        user=pg.user,
                        password=password,
                        database=pg.database,
                        ssl=pg.sslmode,
                    )
                )
            key = _advisory_key(name)
            yield AsyncHandles([_AdvisoryHandle(c, key, poll) for c in connections])
        finally:
            for connection in connections:
                await connection.close()

    return open_


PEERS: list[Peer] = [
    Peer(
        "asyncio-lock",
        "asyncio.Lock (in-process reference)",
        "memory",
        "",
        ("asyncio",),
        "FIFO queue of futures; the releaser wakes the next waiter",
        _open_asyncio_lock,
    ),
    Peer(
        "redis-py",
        "redis-py asyncio Lock",
        "redis",
        "redis>=5.0",
        ("redis.asyncio.lock",),
        "polls SET NX every 0.1 s (its default sleep)",
        _open_redis_py,
    ),
    Peer(
        "redis-py-cluster",
        "redis-py asyncio Lock on RedisCluster",
        "redis-cluster",
        "redis>=5.0",
        ("redis.asyncio.cluster", "redis.asyncio.lock"),
        "polls SET NX every 0.1 s (its default sleep)",
        _open_redis_py_cluster,
    ),
    Peer(
        "python-redis-lock",
        "python-redis-lock",
        "redis",
        "python-redis-lock>=4.0",
        ("redis_lock",),
        "BLPOP on a signal list the releaser pushes to (threads)",
        _open_python_redis_lock,
    ),
    Peer(
        "pottery-redlock",
        "pottery Redlock (one master)",
        "redis",
        "pottery>=3.0",
        ("pottery",),
        "retries after a random 0-0.2 s sleep (threads)",
        _open_pottery_redlock,
    ),
    Peer(
        "pottery-aioredlock",
        "pottery AIORedlock (one master)",
        "redis",
        "pottery>=3.0",
        ("pottery",),
        "retries after a random 0-0.2 s sleep",
        _open_pottery_aioredlock,
    ),
    Peer(
        "aioredlock",
        "aioredlock",
        "redis",
        "aioredlock>=0.7.3",
        ("aioredlock",),
        "3 tries 0.1-0.3 s apart per lock() call, called again until the wait limit",
        _open_aioredlock,
    ),
    Peer(
        "tooz-redis",
        "tooz (Redis driver)",
        "redis",
        "tooz[redis]>=6.0",
        ("tooz.coordination", "tooz.drivers.redis"),
        "redis-py's blocking Lock: polls every 0.1 s (threads)",
        _open_tooz,
    ),
    Peer(
        "tooz-postgresql",
        "tooz (PostgreSQL driver)",
        "postgresql",
        "tooz>=6.0 + psycopg2-binary>=2.9",
        ("tooz.coordination", "tooz.drivers.pgsql"),
        "pg_advisory_lock on a new connection per acquisition (threads)",
        _open_tooz,
    ),
    Peer(
        "pg-advisory",
        "asyncpg pg_advisory_lock",
        "postgresql",
        "asyncpg>=0.29",
        ("asyncpg",),
        "waits in the server's lock queue, one connection per worker",
        _open_advisory(poll=False),
    ),
    Peer(
        "pg-try-advisory",
        "asyncpg pg_try_advisory_lock loop",
        "postgresql",
        "asyncpg>=0.29",
        ("asyncpg",),
        f"polls pg_try_advisory_lock every {TRY_LOCK_POLL_S:g} s, one connection per worker",
        _open_advisory(poll=True),
    ),
    Peer(
        "redis-py-sync",
        "redis-py Lock (blocking)",
        "redis",
        "redis>=5.0",
        ("redis.lock",),
        "polls SET NX every 0.1 s (its default sleep; threads)",
        open_redis_py_sync,
    ),
    # Lockyard's blocking facade (lockyard.sync), measured exactly as the blocking peers are.
    *(
        Peer(
            f"lockyard-sync-{backend}",
            SYNC_PEER,
            backend,
            "",
            ("lockyard.sync",),
            "the async core, driven in the calling thread where the backend serves it (Redis)"
            " and otherwise on one loop thread per handle; waits on that loop (threads)",
            open_lockyard_sync,
        )
        for backend in ("memory", "redis", "postgresql", "dynamodb")
    ),
]

PEER_IDS = [peer.id for peer in PEERS]


def peers_for(backend: str, selected: list[str] | None) -> list[Peer]:
    """The peers that run against ``backend`` (``selected=None`` means every peer)."""
    return [
        peer
        for peer in PEERS
        if peer.backend == backend and (selected is None or peer.id in selected)
    ]
