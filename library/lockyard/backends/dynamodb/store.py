"""The DynamoDB state store: conditional writes and strongly consistent reads on one table.

What each operation costs (requests, conditions) is listed in docs/backends/dynamodb.md; the
expressions are in :mod:`.layout`.
"""

from __future__ import annotations

import math
from typing import Any, Final

from lockyard.errors import BackendError
from lockyard.keys import kind_of
from lockyard.operations import OperationRunner
from lockyard.store import INT64_MAX, INT64_MIN, CasResult, StateStore

from . import layout
from .client import ConditionFailed, TableClient
from .items import (
    AttributeValue,
    Item,
    Response,
    as_n,
    as_s,
    int_of,
    is_live,
    refused_increment,
    value_form,
    value_of,
)
from .throttling import throttle_delays

#: Rounds of the two-request paths of ``set`` and ``increment`` before giving up; each extra
#: round needs another writer to have changed the item in between.
MAX_WRITE_ROUNDS: Final = 8

BATCH_WRITE_LIMIT: Final = 25


class DynamoDBStateStore(StateStore):
    def __init__(self, runner: OperationRunner, table: TableClient) -> None:
        super().__init__(runner)
        self._t = table
        self._client = table.client

    def _key(self, key: str) -> Item:
        return self._t.pk(layout.DATA_TAG, key)

    def _kind_part(self, kind: str) -> AttributeValue:
        return as_s(f"{self._t.prefix}#{layout.DATA_TAG}#{kind}")

    def _item(self, key: str, value: str, version: int, ttl_ms: int | None, now_ms: int) -> Item:
        """A whole data item, for PutItem."""
        item: Item = {
            **self._key(key),
            layout.KIND_PART: self._kind_part(kind_of(key)),
            layout.SORT_KEY: as_s(key),
            layout.VERSION: as_n(version),
            **value_form(value)[1],
        }
        if ttl_ms is not None:
            deadline = now_ms + ttl_ms
            item[layout.EXPIRES_MS] = as_n(deadline)
            item[layout.TTL_ATTRIBUTE] = as_n(math.ceil(deadline / 1000))
        return item

    async def _replace_expired(
        self, key: str, value: str, ttl_ms: int | None
    ) -> Response | ConditionFailed:
        """Second request of set/increment: put version 1 if the item is (still) absent/expired."""
        now = self._t.now_ms()
        return await self._t.write(
            self._client.put_item,
            Item=self._item(key, value, 1, ttl_ms, now),
            ConditionExpression=layout.ABSENT_OR_EXPIRED,
            ExpressionAttributeValues={":now": as_n(now)},
        )

    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        result = await self._replace_expired(key, value, ttl_ms)
        return not isinstance(result, ConditionFailed)

    async def _read(self, key: str) -> Item | None:
        response = await self._t.call(
            self._client.get_item,
            Key=self._key(key),
            ConsistentRead=True,
            ProjectionExpression=layout.DATA_FIELDS,
        )
        item: Item | None = response.get("Item")
        return item if item and is_live(item, self._t.now_ms()) else None

    async def _get(self, key: str) -> str | None:
        item = await self._read(key)
        return None if item is None else value_of(item)

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        item = await self._read(key)
        return None if item is None else (value_of(item), int_of(item, layout.VERSION))

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        form, attributes = value_form(value)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            values: Item = {f":{name}": content for name, content in attributes.items()} | {
                ":zero": as_n(0),
                ":one": as_n(1),
                ":kp": self._kind_part(kind_of(key)),
                ":k": as_s(key),
                ":now": as_n(now),
                **self._t.deadline_values(ttl_ms, now),
            }
            result = await self._t.write(
                self._client.update_item,
                Key=self._key(key),
                UpdateExpression=layout.SET_UPDATES[form, ttl_ms is not None],
                ConditionExpression=layout.MISSING_OR_LIVE,
                ExpressionAttributeValues=values,
            )
            if not isinstance(result, ConditionFailed):
                return
            # The item exists but has expired: the version restarts at 1.
            if not isinstance(await self._replace_expired(key, value, ttl_ms), ConditionFailed):
                return
        raise BackendError(f"dynamodb: set on {key!r} kept racing concurrent writers; retry")

    async def _delete(self, key: str) -> bool:
        response = await self._t.call(
            self._client.delete_item, Key=self._key(key), ReturnValues="ALL_OLD"
        )
        old: Item = response.get("Attributes") or {}
        return bool(old) and is_live(old, self._t.now_ms())

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        sign = (delta > 0) - (delta < 0)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            values: Item = {
                ":zero": as_n(0),
                ":one": as_n(1),
                ":d": as_n(delta),
                ":kp": self._kind_part(kind_of(key)),
                ":k": as_s(key),
                ":now": as_n(now),
                **self._t.deadline_values(ttl_ms, now),
            }
            if sign:
                values[":limit"] = as_n(INT64_MAX - delta if sign > 0 else INT64_MIN - delta)
            result = await self._t.write(
                self._client.update_item,
                Key=self._key(key),
                UpdateExpression=layout.INCREMENT_UPDATES[ttl_ms is not None],
                ConditionExpression=layout.INCREMENTABLE[sign],
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            if not isinstance(result, ConditionFailed):
                return int_of(result["Attributes"], layout.NUMBER)
            old = result.old
            if old is not None and is_live(old, now):
                raise refused_increment(old, key, delta)
            # Expired (native TTL has not deleted it yet): start again from 0 at version 1.
            if not isinstance(
                await self._replace_expired(key, str(delta), ttl_ms), ConditionFailed
            ):
                return delta
        raise BackendError(f"dynamodb: increment on {key!r} kept racing concurrent writers; retry")

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        now = self._t.now_ms()
        result = await self._t.write(
            self._client.put_item,
            Item=self._item(key, new_value, expected_version + 1, ttl_ms, now),
            ConditionExpression=layout.VERSION_MATCHES_AND_LIVE,
            ExpressionAttributeValues={":expected": as_n(expected_version), ":now": as_n(now)},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not isinstance(result, ConditionFailed):
            return CasResult(ok=True, current_value=new_value, current_version=expected_version + 1)
        old = result.old
        if old is None or not is_live(old, now):
            return CasResult(ok=False, current_value=None, current_version=0)
        return CasResult(
            ok=False, current_value=value_of(old), current_version=int_of(old, layout.VERSION)
        )

    async def _scan(self, condition: str, values: Item) -> list[tuple[str, str]]:
        items = await self._t.query(
            IndexName=layout.BY_KIND,
            KeyConditionExpression=condition,
            FilterExpression=layout.LIVE_FILTER,
            ProjectionExpression=layout.SCAN_FIELDS,
            ExpressionAttributeValues={**values, ":now": as_n(self._t.now_ms())},
        )
        return [(item[layout.SORT_KEY]["S"], value_of(item)) for item in items]

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        values = {":kp": self._kind_part(kind), ":prefix": as_s(key_prefix)}
        return await self._scan(layout.KEYS_WITH_PREFIX, values)

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        return await self._scan(layout.KEYS_OF_PART, {":kp": self._kind_part(kind)})

    def _index_part(self, index: str) -> AttributeValue:
        return as_s(f"{self._t.prefix}#{layout.INDEX_TAGS[index]}")

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        item = {
            **self._t.pk(layout.INDEX_TAGS[index], key),
            layout.INDEX_PART: self._index_part(index),
            layout.INDEX_AT: as_n(at_ms),
        }
        await self._t.call(self._client.put_item, Item=item)

    async def _index_remove(self, index: str, key: str) -> None:
        await self._t.call(self._client.delete_item, Key=self._t.pk(layout.INDEX_TAGS[index], key))

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        items = await self._t.query(
            IndexName=layout.BY_TIME,
            KeyConditionExpression=layout.DUE,
            ProjectionExpression=layout.PK,
            ExpressionAttributeValues={":ip": self._index_part(index), ":now": as_n(now_ms)},
        )
        start = len(f"{self._t.prefix}#{layout.INDEX_TAGS[index]}#")
        return [item[layout.PK]["S"][start:] for item in items]

    async def _purge(self) -> int:
        store = f"{self._t.prefix}#"
        params: dict[str, Any] = {
            "FilterExpression": layout.OF_STORE,
            "ProjectionExpression": layout.PK,
            "ExpressionAttributeValues": {":store": as_s(store)},
            "ConsistentRead": True,
        }
        keys: list[str] = []
        while True:
            response = await self._t.call(self._client.scan, **params)
            keys.extend(item[layout.PK]["S"] for item in response.get("Items", []))
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            await self._delete_batch(keys[start : start + BATCH_WRITE_LIMIT])
        data = f"{store}{layout.DATA_TAG}#"
        return sum(1 for pk in keys if pk.startswith(data))

    async def _delete_batch(self, keys: list[str]) -> None:
        requests = [{"DeleteRequest": {"Key": {layout.PK: as_s(pk)}}} for pk in keys]
        delays = throttle_delays(self._t.budget_s)
        while requests:
            response = await self._t.send(
                self._client.batch_write_item, RequestItems={self._t.name: requests}
            )
            requests = response.get("UnprocessedItems", {}).get(self._t.name, [])
            if requests:
                pause = next(delays, None)
                if pause is None:
                    raise BackendError(
                        f"dynamodb: purge of {self._t.name!r} is throttled; retry later"
                    )
                await self._t.clock.sleep(pause)
