"""A moto DynamoDB server for the whole session, on a free loopback port, and helpers to look at
what the backend really sends and stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
import pytest_asyncio

import lockyard
from lockyard.backends.dynamodb import DynamoDBBackend
from lockyard_dev.servers.moto import DEFAULT_REGION, DUMMY_KEY_ID, DUMMY_SECRET, MotoServer


@pytest.fixture(scope="session")
def shared_table() -> str:
    """The table the conformance suite shares; every test uses its own prefix in it."""
    return "lockyard-conformance"


@pytest.fixture
def new_table() -> str:
    """A table name no test has used yet."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def ly(moto_server: MotoServer, shared_table: str) -> AsyncIterator[lockyard.Connection]:
    """A connection on a fresh prefix of the shared table; purged and closed afterwards."""
    connection = await lockyard.connect(moto_server.url(shared_table, f"p{uuid.uuid4().hex[:10]}"))
    try:
        yield connection
    finally:
        try:
            await connection.store.purge()
        finally:
            await connection.close()


@pytest_asyncio.fixture
async def raw_client(moto_server: MotoServer) -> AsyncIterator[Any]:
    """A plain aiobotocore client on the same server, to inspect and prepare tables."""
    session = aioboto3.Session(
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
        region_name=DEFAULT_REGION,
    )
    async with session.client("dynamodb", endpoint_url=moto_server.endpoint_url) as client:
        yield client


@pytest.fixture
def backend(ly: lockyard.Connection) -> DynamoDBBackend:
    """The backend object behind ``ly``: its client, table and prefix."""
    found = ly._backend
    assert isinstance(found, DynamoDBBackend)
    return found


@pytest.fixture
def calls(backend: DynamoDBBackend) -> Calls:
    """Every DynamoDB request ``ly`` sends from now on, by operation name."""
    return Calls(backend.client)


class Calls:
    """Records the DynamoDB operation of every HTTP request a client sends (retries included)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-send.dynamodb", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        target = request.headers["X-Amz-Target"]
        text = target.decode() if isinstance(target, bytes) else target
        self.names.append(text.rsplit(".", 1)[-1])

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names
