"""Real servers for the property tests, one of each per session, and a memory/backend pair.

The server fixtures of ``tests/<backend>/conftest.py`` are not visible from here, so this file
starts its own through the same launchers. Hypothesis runs each example synchronously, so a test
gets an :class:`asyncio.Runner` of its own and runs every operation through it; both connections
of a :class:`~property_support.Pair` live on that runner's loop and are closed on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from property_support import Pair

import lockyard
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer

BACKENDS = [
    pytest.param("memory"),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("dynamodb", marks=pytest.mark.dynamodb),
]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``prefix -> URL`` of the backend under test (its server started on first use)."""
    name: str = request.param
    if name == "memory":
        return lambda prefix: f"memory://?prefix={prefix}"
    if name == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        return lambda prefix: redis.url(prefix)
    if name == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        return lambda prefix: postgres.url(sslmode="disable", prefix=prefix)
    moto: MotoServer = request.getfixturevalue("moto_server")
    return lambda prefix: moto.url("lockyard-properties", prefix)


@pytest.fixture
def pair(backend_url: Callable[[str], str]) -> Iterator[Pair]:
    with asyncio.Runner() as runner:
        prefix = f"prop{uuid.uuid4().hex[:10]}"
        model = runner.run(_connect("memory://"))
        try:
            real = runner.run(_connect(backend_url(prefix)))
            try:
                yield Pair(runner, model, real)
                runner.run(real.store.purge())
            finally:
                runner.run(real.close())
        finally:
            runner.run(model.close())


async def _connect(url: str) -> lockyard.Connection:
    return await lockyard.connect(url)
