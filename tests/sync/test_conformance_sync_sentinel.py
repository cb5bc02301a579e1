"""The blocking facade passes the whole contract on Redis behind Sentinel."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.redis import RedisSentinelSetup

pytestmark = pytest.mark.sentinel


class TestSyncSentinelConformance(Conformance):
    # As for PostgreSQL: a waiter's first attempt may open a pooled connection (through the
    # sentinels, with AUTH), slow under load; the queue tests release once all have queued.
    queue_join_s = 0.5

    @pytest.fixture
    def lockyard_connect(self, redis_sentinel: RedisSentinelSetup) -> ConnectFactory:
        def open_sync(prefix: str) -> lockyard.sync.Connection:
            handle = lockyard.sync.connect(redis_sentinel.url(prefix))
            assert handle.backend == "redis-sentinel"
            return handle

        return sync_connect_factory(open_sync)
