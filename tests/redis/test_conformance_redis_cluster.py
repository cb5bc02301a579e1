"""The Redis backend on a Redis Cluster (3 masters, 3 replicas) passes the whole contract."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

pytestmark = pytest.mark.redis


class TestRedisClusterConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, redis_cluster: RedisClusterSetup) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            connection = await lockyard.connect(redis_cluster.url(prefix))
            assert connection.backend == "redis-cluster"
            return connection

        return connect
