"""The blocking facade passes the whole contract on one Redis server."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis


class TestSyncRedisConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, redis_server: RedisServer) -> ConnectFactory:
        return sync_connect_factory(lambda prefix: lockyard.sync.connect(redis_server.url(prefix)))
