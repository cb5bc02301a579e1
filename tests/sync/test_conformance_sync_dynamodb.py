"""The blocking facade passes the whole contract on DynamoDB (moto in server mode)."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.moto import SUITE_OPERATION_TIMEOUT_S, MotoServer

pytestmark = pytest.mark.dynamodb


class TestSyncDynamoDBConformance(Conformance):
    # The same bounds as the async run (tests/dynamodb): no release signal, moto is slow.
    handover_bound_s = 0.25
    short_ttl_s = 0.6
    expiry_wait_s = 0.9

    @pytest.fixture
    def lockyard_connect(self, moto_server: MotoServer) -> ConnectFactory:
        return sync_connect_factory(
            lambda prefix: lockyard.sync.connect(
                moto_server.url(
                    "lockyard-sync-conformance", prefix, timeout=f"{SUITE_OPERATION_TIMEOUT_S}"
                )
            )
        )
