"""PostgreSQL servers for the backend's tests: real clusters started by the harness.

``postgres_server`` is shared by the tests that leave the server running; the restart and TLS
tests start their own (they stop the server, or need certificates). ``ly`` and ``raw`` serve the
backend's own tests: a handle in the module's ``SCHEMA``, and a plain connection beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

import lockyard
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.postgres import PostgresServer


@pytest_asyncio.fixture
async def ly(
    request: pytest.FixtureRequest, postgres_server: PostgresServer
) -> AsyncIterator[lockyard.Connection]:
    """A handle on a fresh prefix, in the schema the test module names as ``SCHEMA``."""
    url = postgres_server.url(prefix=unique_prefix(), schema=request.module.SCHEMA)
    async with lockyard.connect(url) as handle:
        yield handle
        await handle.store.purge()


@pytest_asyncio.fixture
async def raw(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the same server, to look at what the backend wrote."""
    connection = await asyncpg.connect(postgres_server.dsn())
    yield connection
    await connection.close()
