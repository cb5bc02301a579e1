"""PostgreSQL servers for the backend's tests: real clusters started by the harness.

``postgres_server`` is shared by the tests that leave the server running; the restart and TLS
tests start their own (they stop the server, or need certificates).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockyard.testing.servers.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server
