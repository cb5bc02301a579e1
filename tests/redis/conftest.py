"""Real Redis servers for the Redis backend's tests, started once per session on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockyard_dev.servers.redis import (
    RedisSentinelSetup,
    RedisServer,
    TLSFiles,
    make_test_tls,
)
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

PASSWORD = "s3cret pass/word"
ACL_USER = "lockyard-app"


@pytest.fixture(scope="session")
def redis_acl_server() -> Iterator[RedisServer]:
    """A server with requirepass and an ACL user limited to Lockyard's keys and commands."""
    with RedisServer(password=PASSWORD, username=ACL_USER) as server:
        yield server


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_test_tls(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="session")
def redis_tls_server(redis_tls: TLSFiles) -> Iterator[RedisServer]:
    """A TLS-only server whose certificate the test CA signed."""
    with RedisServer(tls=redis_tls) as server:
        yield server


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSetup]:
    """One master, one replica, three sentinels (never failed over: conformance runs on it)."""
    with RedisSentinelSetup(password=PASSWORD) as setup:
        yield setup


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server only this test uses (it may stop and restart it)."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSetup]:
    """3 masters, one replica each (never failed over or resharded: conformance runs on it)."""
    with RedisClusterSetup() as cluster:
        yield cluster


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterSetup]:
    """A cluster only this test uses (it may kill nodes and move slots)."""
    with RedisClusterSetup(tmp_path / "cluster") as cluster:
        yield cluster
