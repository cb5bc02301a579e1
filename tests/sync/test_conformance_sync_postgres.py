"""The blocking facade passes the whole contract on PostgreSQL 15."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


class TestSyncPostgresConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, postgres_server: PostgresServer) -> ConnectFactory:
        return sync_connect_factory(
            lambda prefix: lockyard.sync.connect(
                postgres_server.url(prefix=prefix, schema="sync_conformance")
            )
        )
