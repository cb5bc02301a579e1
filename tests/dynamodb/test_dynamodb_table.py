"""Opening a DynamoDB connection: the table is created (idempotently, also by racing processes)
only with create_table=true, checked otherwise, and every refusal names its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import lockyard
from lockyard import BackendConnectionError, ConfigError
from lockyard.backends.dynamodb import layout
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.process import free_port

pytestmark = pytest.mark.dynamodb


async def test_a_missing_table_without_create_table_names_the_table_and_the_option(
    moto_server: MotoServer, new_table: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{new_table}.*create_table=true"):
        await lockyard.connect(moto_server.url(new_table, create_table=False))


async def test_create_table_creates_the_documented_table_once(
    moto_server: MotoServer, new_table: str, raw_client: Any
) -> None:
    for attempt in range(2):
        async with lockyard.connect(moto_server.url(new_table, "p")) as ly:
            await ly.store.set(f"ns:acme:state:k{attempt}", "v")
    described = (await raw_client.describe_table(TableName=new_table))["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {i["IndexName"]: i for i in described["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by_kind", "by_time"}
    assert indexes["by_time"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ttl = (await raw_client.describe_time_to_live(TableName=new_table))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    async with lockyard.connect(moto_server.url(new_table, "p", create_table=False)) as ly:
        assert await ly.store.get("ns:acme:state:k1") == "v"
        await ly.store.purge()


async def test_racing_creators_all_open_the_same_table(
    moto_server: MotoServer, new_table: str
) -> None:
    url = moto_server.url(new_table, "p")
    connections = await asyncio.gather(*(lockyard.connect(url) for _ in range(4)))
    try:
        assert await connections[0].store.check_and_set("ns:acme:dedup:x", "first")
        assert all([await c.store.get("ns:acme:dedup:x") == "first" for c in connections])
    finally:
        await connections[0].store.purge()
        for connection in connections:
            await connection.close()


async def test_a_table_of_another_layout_is_refused(
    moto_server: MotoServer, new_table: str, raw_client: Any
) -> None:
    await raw_client.create_table(
        TableName=new_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(ConfigError, match=rf"{new_table}.*key schema"):
        await lockyard.connect(moto_server.url(new_table))


async def test_a_table_without_the_indexes_is_refused(
    moto_server: MotoServer, new_table: str, raw_client: Any
) -> None:
    definition = layout.table_definition(new_table)
    definition["GlobalSecondaryIndexes"] = definition["GlobalSecondaryIndexes"][:1]
    definition["AttributeDefinitions"] = [
        a for a in definition["AttributeDefinitions"] if a["AttributeName"] in {"pk", "kp", "k"}
    ]
    await raw_client.create_table(**definition)
    with pytest.raises(ConfigError, match=rf"{new_table}.*by_time"):
        await lockyard.connect(moto_server.url(new_table, create_table=False))


async def test_a_key_id_without_a_secret_is_a_config_error(moto_server: MotoServer) -> None:
    url = f"dynamodb://only-a-key-id@tbl?endpoint_url={moto_server.endpoint_url}"
    with pytest.raises(ConfigError, match="secret_access_key"):
        await lockyard.connect(url)


async def test_an_unreachable_endpoint_fails_the_connect_quickly(new_table: str) -> None:
    url = f"dynamodb://k:s@{new_table}?endpoint_url=http://127.0.0.1:{free_port()}&timeout=6"
    started = asyncio.get_running_loop().time()
    with pytest.raises(BackendConnectionError, match="cannot reach"):
        await lockyard.connect(url)
    # Refused at once, not after the timeout or a retry: well under the 6 s timeout even when
    # building the botocore client alone takes most of a second on a loaded machine.
    assert asyncio.get_running_loop().time() - started < 3.0
