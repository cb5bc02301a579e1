"""The PostgreSQL backend passes the whole contract against a real PostgreSQL 15 server."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


class TestPostgresConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self, postgres_server: PostgresServer) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(postgres_server.url(prefix=prefix, schema="conformance"))

        return connect
