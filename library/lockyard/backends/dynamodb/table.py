"""Provisioning the DynamoDB backend's table: create it (with ``create_table``), wait for it
and its indexes, check that an existing table has the layout of :mod:`.layout`, enable TTL."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from botocore.exceptions import ClientError

from lockyard.config import DynamoDBConfig
from lockyard.errors import ConfigError

from . import layout
from .errors import error_code

logger = logging.getLogger(__name__)

#: How long opening a connection may wait for CreateTable, its GSIs and TTL to become active.
TABLE_SETUP_TIMEOUT_S: Final = 300.0
TABLE_POLL_INTERVAL_S: Final = 0.5


async def prepare_table(client: Any, config: DynamoDBConfig) -> None:
    """Check the table's layout; with ``create_table`` create it and its TTL first if missing.

    Idempotent and safe to run from many processes at once: a concurrent CreateTable shows up as
    ``ResourceInUseException`` and a concurrent TTL change as a ``ValidationException``, and both
    are followed by waiting for the state the winner produced.
    """
    table = config.table
    try:
        description = await _describe(client, table)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        if not config.create_table:
            where = config.endpoint_url or f"region {config.region}"
            raise ConfigError(
                f"DynamoDB table {table!r} does not exist ({where}): connect once with "
                f"create_table=true (dynamodb://{table}?create_table=true), or create it with "
                "the definition in lockyard.backends.dynamodb.layout.table_definition"
            ) from None
        try:
            await client.create_table(**layout.table_definition(table))
            logger.info("created DynamoDB table %s", table)
        except ClientError as exc:
            # Another process is creating it at the same moment: wait for its table instead.
            if error_code(exc) != "ResourceInUseException":
                raise
        description = await _describe(client, table, wait_missing=True)
    while not _active(description):
        await asyncio.sleep(TABLE_POLL_INTERVAL_S)
        description = await _describe(client, table, wait_missing=True)
    check_layout(description)
    if config.create_table:
        await _ensure_ttl(client, table)


async def _describe(client: Any, table: str, wait_missing: bool = False) -> dict[str, Any]:
    while True:
        try:
            response = await client.describe_table(TableName=table)
        except ClientError as exc:
            # Right after CreateTable, DescribeTable may not see the table yet.
            if not wait_missing or error_code(exc) != "ResourceNotFoundException":
                raise
            await asyncio.sleep(TABLE_POLL_INTERVAL_S)
            continue
        description: dict[str, Any] = response["Table"]
        return description


def _active(description: dict[str, Any]) -> bool:
    indexes = description.get("GlobalSecondaryIndexes", [])
    return description.get("TableStatus") == "ACTIVE" and all(
        index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
    )


def check_layout(description: dict[str, Any]) -> None:
    """``ConfigError`` naming what is missing when the table was not made for this backend."""
    table = description.get("TableName", "?")
    keys = [(k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])]
    if keys != [(layout.PK, "HASH")]:
        raise ConfigError(
            f"DynamoDB table {table!r} has the key schema {keys}; lockyard needs a table whose "
            f"only key is the hash key {layout.PK!r} (S): use another table name"
        )
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    for name, hash_key, range_key in layout.REQUIRED_INDEXES:
        index = indexes.get(name)
        found = [(k["AttributeName"], k["KeyType"]) for k in (index or {}).get("KeySchema", [])]
        if found != [(hash_key, "HASH"), (range_key, "RANGE")]:
            raise ConfigError(
                f"DynamoDB table {table!r} lacks the global secondary index {name!r} "
                f"({hash_key} HASH, {range_key} RANGE): it was not created by lockyard; see "
                "lockyard.backends.dynamodb.layout.table_definition"
            )
    projection = indexes[layout.BY_KIND].get("Projection", {})
    if projection.get("ProjectionType") != "ALL":
        missing = set(layout.BY_KIND_PROJECTION) - set(projection.get("NonKeyAttributes", []))
        if missing:
            raise ConfigError(
                f"DynamoDB table {table!r}: index {layout.BY_KIND!r} does not project "
                f"{sorted(missing)}; see lockyard.backends.dynamodb.layout.table_definition"
            )


async def _ensure_ttl(client: Any, table: str) -> None:
    for _ in range(2):
        response = await client.describe_time_to_live(TableName=table)
        description = response.get("TimeToLiveDescription", {})
        status = description.get("TimeToLiveStatus", "DISABLED")
        if status in {"ENABLED", "ENABLING"}:
            if description.get("AttributeName") != layout.TTL_ATTRIBUTE:
                raise ConfigError(
                    f"DynamoDB table {table!r} has native TTL on "
                    f"{description.get('AttributeName')!r}; lockyard needs it on "
                    f"{layout.TTL_ATTRIBUTE!r}"
                )
            return
        if status == "DISABLING":
            break
        try:
            await client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": layout.TTL_ATTRIBUTE},
            )
            return
        except ClientError as exc:
            # Another process enabled it first (or the table is still settling): look again.
            if error_code(exc) != "ValidationException":
                raise
    logger.warning(
        "DynamoDB table %s: native TTL on %s could not be enabled; expired items stay hidden "
        "but are not reclaimed until it is",
        table,
        layout.TTL_ATTRIBUTE,
    )
