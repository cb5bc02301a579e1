"""The Redis backend through Sentinel (master, replica, three sentinels) passes the contract."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.redis import RedisSentinelSetup

pytestmark = pytest.mark.sentinel


class TestSentinelConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, redis_sentinel: RedisSentinelSetup) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            connection = await lockyard.connect(redis_sentinel.url(prefix))
            assert connection.backend == "redis-sentinel"
            return connection

        return connect
