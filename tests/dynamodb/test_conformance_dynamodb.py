"""The DynamoDB backend keeps the whole contract, against moto in server mode."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.moto import SUITE_OPERATION_TIMEOUT_S, MotoServer

pytestmark = pytest.mark.dynamodb


class TestDynamoDBConformance(Conformance):
    # No release signal exists in DynamoDB: waiters poll (DynamoDBLocks.poll_cap_s = 50 ms).
    handover_bound_s = 0.25
    # moto answers in 5-30 ms quietly but in hundreds under a loaded CI run; a 0.3 s TTL
    # lapsed between two writes there once (a real race, not a backend fault).
    short_ttl_s = 0.6
    expiry_wait_s = 0.9

    @pytest.fixture
    def lockyard_connect(self, moto_server: MotoServer, shared_table: str) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            url = moto_server.url(shared_table, prefix, timeout=f"{SUITE_OPERATION_TIMEOUT_S}")
            return await lockyard.connect(url)

        return connect
