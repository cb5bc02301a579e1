"""The Redis backend (one server) passes the whole contract."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis


class TestRedisConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, redis_server: RedisServer) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(redis_server.url(prefix))

        return connect
