"""The DynamoDB backend keeps the whole contract, against moto in server mode."""

from __future__ import annotations

import pytest
import pytest_asyncio

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.moto import MotoServer

pytestmark = pytest.mark.dynamodb


class TestDynamoDBConformance(Conformance):
    # No release signal exists in DynamoDB: waiters poll (DynamoDBLocks.poll_cap_s = 50 ms).
    handover_bound_s = 0.25
    # moto answers in 5-30 ms quietly but in hundreds under a loaded CI run; a 0.3 s TTL
    # lapsed between two writes there once (a real race, not a backend fault).
    short_ttl_s = 0.6
    expiry_wait_s = 0.9

    @pytest_asyncio.fixture(autouse=True)
    async def bounds_from_measured_round_trips(
        self, moto_server: MotoServer, shared_table: str
    ) -> None:
        """Widen the bounds that contain a request by the round trips measured right now.

        A timed-out acquire may start its last attempt just before the deadline, and a waiter
        sees a release one poll and one request after it: both include a moto request, which
        takes 5-30 ms quietly but hundreds beside CPU-bound work. The spec's values stay the
        floor.
        """
        async with lockyard.connect(moto_server.url(shared_table, unique_prefix())) as probe:
            slowest = max([await probe.ping() for _ in range(3)])
        self.timeout_slack_s = max(type(self).timeout_slack_s, 2 * slowest)
        self.handover_bound_s = max(type(self).handover_bound_s, 0.05 + 2 * slowest)

    @pytest.fixture
    def lockyard_connect(self, moto_server: MotoServer, shared_table: str) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(moto_server.url(shared_table, prefix))

        return connect
