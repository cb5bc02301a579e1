"""Real servers for the Jepsen smoke and the wire fuzzer, one of each per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer


@pytest.fixture(scope="session")
def fuzz_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def fuzz_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server
