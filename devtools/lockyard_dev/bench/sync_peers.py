"""Blocking lock cycles: ``lockyard.sync`` next to redis-py's blocking ``Lock`` (issue 19).

``lockyard.sync`` is measured as a peer would be, one thread per worker through
:func:`lockyard_dev.bench.lock_cycles.contended_sync`, so its figures sit in the same tables as
python-redis-lock, pottery and tooz (which are blocking libraries too). All workers share one
handle, as the threads of one process would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lockyard.config import BackendConfig, RedisConfig
from lockyard.errors import LockTimeoutError
from lockyard_dev.bench.lock_cycles import ACQUIRE_TIMEOUT_S, LOCK_TTL_S

if TYPE_CHECKING:
    from lockyard.sync import Connection, LockGuard
    from lockyard_dev.bench.peers import Handles

#: The label of ``lockyard.sync``'s rows in the peer tables.
SYNC_PEER = "lockyard.sync (blocking)"


class LockyardSyncHandle:
    """A worker's blocking handle on one Lockyard lock name (shared ``lockyard.sync`` handle)."""

    def __init__(self, handle: Connection, name: str) -> None:
        self._locks = handle.locks
        self._name = name
        self._guard: LockGuard | None = None

    def acquire(self) -> bool:
        try:
            self._guard = self._locks.acquire(self._name, LOCK_TTL_S, ACQUIRE_TIMEOUT_S)
        except LockTimeoutError:
            return False
        return True

    def release(self) -> None:
        assert self._guard is not None
        guard, self._guard = self._guard, None
        guard.release()


@contextlib.asynccontextmanager
async def open_lockyard_sync(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    import asyncio

    import lockyard.sync
    from lockyard_dev.bench.peers import SyncHandles

    handle = await asyncio.to_thread(lockyard.sync.connect, config)
    try:
        yield SyncHandles([LockyardSyncHandle(handle, name) for _ in range(workers)])
    finally:
        await asyncio.to_thread(handle.close)


class _RedisPyLockHandle:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=True, blocking_timeout=ACQUIRE_TIMEOUT_S))

    def release(self) -> None:
        self._lock.release()


@contextlib.asynccontextmanager
async def open_redis_py_sync(
    config: BackendConfig, name: str, workers: int
) -> AsyncIterator[Handles]:
    import redis

    from lockyard_dev.bench.peers import SyncHandles

    if not isinstance(config, RedisConfig):
        raise TypeError(f"redis-py needs a redis:// target, got {config.backend}")
    client = redis.Redis(
        host=config.host,
        port=config.port,
        db=config.db,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
    )
    try:
        yield SyncHandles(
            [_RedisPyLockHandle(client.lock(name, timeout=LOCK_TTL_S)) for _ in range(workers)]
        )
    finally:
        client.close()
