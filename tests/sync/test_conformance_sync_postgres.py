"""The blocking facade passes the whole contract on PostgreSQL 15."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


class TestSyncPostgresConformance(Conformance):
    # A waiter's first attempt may need a new pooled connection, which prepares Lockyard's
    # statements on first use: under load that took 0.4 s here, and the queue tests must not
    # release before every waiter is queued (the async run's threads-free path is faster).
    queue_join_s = 0.5
    # A hand-over measured here ends when the waiter's result is back on the suite's loop:
    # two thread hand-offs after the async core's; under load they took over 50 ms.
    handover_bound_s = 0.2

    @pytest.fixture
    def lockyard_connect(self, postgres_server: PostgresServer) -> ConnectFactory:
        return sync_connect_factory(
            lambda prefix: lockyard.sync.connect(
                postgres_server.url(prefix=prefix, schema="sync_conformance")
            )
        )
