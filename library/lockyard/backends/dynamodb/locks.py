"""DynamoDB locks: conditional writes on one item per name, with a fencing counter that is
bumped in the acquiring write and never removed. No release signal exists, so waiters poll."""

from __future__ import annotations

from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import OperationRunner

from . import layout
from .client import ConditionFailed, TableClient
from .items import Item, as_n, as_s, int_of


class DynamoDBLocks(DistributedLock):
    #: No release signal exists in DynamoDB: waiters poll, at least this often once backed off.
    poll_cap_s = 0.05

    def __init__(self, runner: OperationRunner, table: TableClient) -> None:
        super().__init__(runner, table.clock)
        self._t = table
        self._client = table.client

    def _key(self, name: str) -> Item:
        return self._t.pk(layout.LOCK_TAG, name)

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        # No queue (wait_ms is ignored): without a release signal there is nothing to hand the
        # lock over with, so waiters poll and the first attempt after a release wins.
        now = self._t.now_ms()
        result = await self._t.write(
            self._client.update_item,
            Key=self._key(name),
            UpdateExpression=layout.ACQUIRE,
            ConditionExpression=layout.LOCK_FREE,
            ExpressionAttributeValues={
                ":now": as_n(now),
                ":own": as_s(owner),
                ":dl": as_n(now + ttl_ms),
                ":zero": as_n(0),
                ":one": as_n(1),
                ":lock_kp": as_s(f"{self._t.prefix}#{layout.LOCK_TAG}"),
                ":name": as_s(name),
            },
            ReturnValues="UPDATED_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not isinstance(result, ConditionFailed):
            return AcquireAttempt(int_of(result["Attributes"], layout.FENCING))
        old = result.old
        if old is None or layout.DEADLINE not in old:
            return AcquireAttempt(None)
        return AcquireAttempt(None, retry_after_ms=max(0, int_of(old, layout.DEADLINE) - now))

    async def _held_write(self, name: str, update: str, values: Item, condition: str) -> bool:
        result = await self._t.write(
            self._client.update_item,
            Key=self._key(name),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues={**values, ":now": as_n(self._t.now_ms())},
        )
        return not isinstance(result, ConditionFailed)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        values = {":own": as_s(owner), ":dl": as_n(self._t.now_ms() + ttl_ms)}
        return await self._held_write(name, layout.EXTEND, values, layout.HELD_BY)

    async def _release(self, name: str, owner: str) -> bool:
        return await self._held_write(name, layout.RELEASE, {":own": as_s(owner)}, layout.HELD_BY)

    async def _break(self, name: str) -> bool:
        return await self._held_write(name, layout.RELEASE, {}, layout.HELD_BY_ANYONE)

    async def _is_held(self, name: str, owner: str) -> bool:
        response = await self._t.call(
            self._client.get_item,
            Key=self._key(name),
            ConsistentRead=True,
            ProjectionExpression=layout.LOCK_FIELDS,
        )
        item: Item = response.get("Item") or {}
        return (
            item.get(layout.OWNER, {}).get("S") == owner
            and layout.DEADLINE in item
            and int_of(item, layout.DEADLINE) > self._t.now_ms()
        )

    async def _holder(self, name: str) -> LockInfo | None:
        response = await self._t.call(
            self._client.get_item,
            Key=self._key(name),
            ConsistentRead=True,
            ProjectionExpression=layout.HELD_FIELDS,
        )
        item: Item = response.get("Item") or {}
        now = self._t.now_ms()
        if layout.OWNER not in item or layout.DEADLINE not in item:
            return None
        deadline = int_of(item, layout.DEADLINE)
        if deadline <= now:
            return None
        owner = item[layout.OWNER]["S"]
        return LockInfo(name, owner, int_of(item, layout.FENCING), deadline - now)

    async def _list_held(self) -> list[LockInfo]:
        now = self._t.now_ms()
        items = await self._t.query(
            IndexName=layout.BY_KIND,
            KeyConditionExpression=layout.KEYS_OF_PART,
            FilterExpression=layout.HELD_FILTER,
            ProjectionExpression=layout.HELD_FIELDS,
            ExpressionAttributeValues={
                ":kp": as_s(f"{self._t.prefix}#{layout.LOCK_TAG}"),
                ":now": as_n(now),
            },
        )
        return [
            LockInfo(
                name=item[layout.SORT_KEY]["S"],
                owner=item[layout.OWNER]["S"],
                fencing_token=int_of(item, layout.FENCING),
                expires_in_ms=int_of(item, layout.DEADLINE) - now,
            )
            for item in items
        ]
