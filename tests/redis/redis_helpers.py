"""Helpers the Redis backend's own tests share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import lockyard
from lockyard.backends.redis import RedisBackend


def backend_of(ly: lockyard.Connection) -> RedisBackend:
    """The Redis backend under a handle, for tests that look at its keys, scripts or pool."""
    backend = ly._backend
    assert isinstance(backend, RedisBackend)
    return backend


@contextlib.asynccontextmanager
async def fresh_connection(url: str) -> AsyncIterator[lockyard.Connection]:
    """A handle on ``url``; everything it wrote is purged when the test ends."""
    connection = await lockyard.connect(url)
    try:
        yield connection
    finally:
        await connection.store.purge()
        await connection.close()
