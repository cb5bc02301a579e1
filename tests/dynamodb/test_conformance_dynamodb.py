"""The DynamoDB backend keeps the whole contract, against moto in server mode."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard.testing.servers.moto import MotoServer

pytestmark = pytest.mark.dynamodb


class TestDynamoDBConformance(Conformance):
    # No release signal exists in DynamoDB: waiters poll (DynamoDBLocks.poll_cap_s = 50 ms).
    handover_bound_s = 0.25

    @pytest.fixture
    def lockyard_connect(self, moto_server: MotoServer, shared_table: str) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(moto_server.url(shared_table, prefix))

        return connect
