"""Servers that the lease-deadline tests may freeze (SIGSTOP): their own, never shared ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisSentinelSetup, RedisServer


@pytest.fixture(scope="session")
def deadline_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def deadline_sentinel() -> Iterator[RedisSentinelSetup]:
    # Sentinels that never fail over during a test: what is under test is a stalled master.
    with RedisSentinelSetup(down_after_ms=60_000) as setup:
        yield setup


@pytest.fixture(scope="session")
def deadline_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def deadline_moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server
