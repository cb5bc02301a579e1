"""The servers the blocking facade's conformance runs need, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisSentinelSetup, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSetup]:
    with RedisSentinelSetup(password="sync s3cret") as setup:
        yield setup


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server
