"""DynamoDB fenced writes: one ``TransactWriteItems`` of a ``ConditionCheck`` on the guard's item
and the write itself, so the write lands only if the lease is held when it does.

The check: on a lock's item ``own = :own AND dl > :now`` (:data:`.layout.HELD_BY`); on a permit
table's item ``h.#o.dl > :now`` (the owner's lease end, client clock as everywhere on DynamoDB).
The write: the unfenced operation's item write with its condition. A cancelled transaction says
which part refused (``CancellationReasons``): the check (the lease is gone: ``FenceLostError``)
or the write's own condition (a result, exactly as unfenced).

Two operations differ from their unfenced form, because a transaction returns no attributes:
``delete`` conditions the delete on a live item (an expired one is left to native TTL) to know
what to return, and ``increment`` first reads the item (consistent ``GetItem``) and then writes
the sum conditioned on the version it read: two requests, and a retry when another writer came
in between.
"""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import ClientError

from lockyard.errors import BackendError, StateError
from lockyard.fenced_writes import Fence, FencedWrites, fence_lost
from lockyard.keys import kind_of
from lockyard.store import CasResult, checked_sum, parse_counter

from . import layout
from .client import TableClient
from .errors import error_code
from .items import Item, as_n, as_s, int_of, is_live, value_form, value_of
from .permits import SPACE_TAGS
from .store import MAX_WRITE_ROUNDS, DynamoDBStateStore

#: A live item (the delete's condition).
LIVE_ITEM: Final = "attribute_exists(pk) AND (attribute_not_exists(exp_ms) OR exp_ms > :now)"
#: The same version, still live (a fenced increment's write). Values: :ver, :now.
SAME_LIVE_VERSION: Final = "ver = :ver AND (attribute_not_exists(exp_ms) OR exp_ms > :now)"


class _WriteRefused(Exception):
    """The write's own condition was false; ``old`` is the item it was checked on."""

    def __init__(self, old: Item | None) -> None:
        self.old = old


class DynamoDBFencedWrites(FencedWrites):
    def __init__(self, table: TableClient, store: DynamoDBStateStore) -> None:
        self._t = table
        self._client = table.client
        self._store = store

    def _check(self, fence: Fence, now: int) -> dict[str, Any]:
        check: dict[str, Any] = {"TableName": self._t.name}
        if fence.kind == "lock":
            check |= {
                "Key": self._t.pk(layout.LOCK_TAG, fence.name),
                "ConditionExpression": layout.HELD_BY,
                "ExpressionAttributeValues": {":own": as_s(fence.owner), ":now": as_n(now)},
            }
        else:
            check |= {
                "Key": self._t.pk(SPACE_TAGS[fence.kind], fence.name),
                "ConditionExpression": "h.#o.dl > :now",
                "ExpressionAttributeNames": {"#o": fence.owner},
                "ExpressionAttributeValues": {":now": as_n(now)},
            }
        return {"ConditionCheck": check}

    async def _transact(
        self, fence: Fence, operation: str, key: str, now: int, write: dict[str, Any]
    ) -> None:
        """Check and write; ``_WriteRefused`` if the write's condition was false."""
        ((kind, request),) = write.items()
        items = [self._check(fence, now), {kind: {"TableName": self._t.name, **request}}]
        for _ in range(MAX_WRITE_ROUNDS):
            try:
                await self._t.send(self._client.transact_write_items, TransactItems=items)
                return
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or [{}, {}]
                codes = [reason.get("Code", "None") for reason in reasons]
                if codes[0] == "ConditionalCheckFailed":
                    raise fence_lost(fence, operation, key) from None
                if codes[1] == "ConditionalCheckFailed":
                    raise _WriteRefused(reasons[1].get("Item") or None) from None
                if "TransactionConflict" not in codes:
                    raise
                # Another transaction or write on one of the items was in progress: again.
        raise BackendError(f"dynamodb: fenced {operation} on {key!r} kept conflicting; retry")

    def _put_new(self, key: str, value: str, ttl_ms: int | None, now: int) -> dict[str, Any]:
        """A version-1 item, if the key is absent or expired."""
        return {
            "Put": {
                "Item": self._store._item(key, value, 1, ttl_ms, now),
                "ConditionExpression": layout.ABSENT_OR_EXPIRED,
                "ExpressionAttributeValues": {":now": as_n(now)},
            }
        }

    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        now = self._t.now_ms()
        try:
            await self._transact(
                fence, "check_and_set", key, now, self._put_new(key, value, ttl_ms, now)
            )
        except _WriteRefused:
            return False
        return True

    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None:
        form, attributes = value_form(value)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            values: Item = {f":{name}": content for name, content in attributes.items()} | {
                ":zero": as_n(0),
                ":one": as_n(1),
                ":kp": self._store._kind_part(kind_of(key)),
                ":k": as_s(key),
                ":now": as_n(now),
                **self._t.deadline_values(ttl_ms, now),
            }
            update = {
                "Update": {
                    "Key": self._store._key(key),
                    "UpdateExpression": layout.SET_UPDATES[form, ttl_ms is not None],
                    "ConditionExpression": layout.MISSING_OR_LIVE,
                    "ExpressionAttributeValues": values,
                }
            }
            try:
                await self._transact(fence, "set", key, now, update)
                return
            except _WriteRefused:
                pass  # the item exists but has expired: the version restarts at 1
            try:
                await self._transact(fence, "set", key, now, self._put_new(key, value, ttl_ms, now))
                return
            except _WriteRefused:
                continue  # revived in between: update it
        raise BackendError(f"dynamodb: set on {key!r} kept racing concurrent writers; retry")

    async def delete(self, fence: Fence, key: str) -> bool:
        now = self._t.now_ms()
        write = {
            "Delete": {
                "Key": self._store._key(key),
                "ConditionExpression": LIVE_ITEM,
                "ExpressionAttributeValues": {":now": as_n(now)},
            }
        }
        try:
            await self._transact(fence, "delete", key, now, write)
        except _WriteRefused:
            return False
        return True

    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int:
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            response = await self._t.call(
                self._client.get_item,
                Key=self._store._key(key),
                ConsistentRead=True,
                ProjectionExpression=layout.DATA_FIELDS,
            )
            old: Item | None = response.get("Item")
            if old is None or not is_live(old, now):
                result, write = delta, self._put_new(key, str(delta), ttl_ms, now)
            else:
                try:
                    result = checked_sum(parse_counter(value_of(old), key), delta, key)
                except StateError:
                    await self._require_fence(fence, key)
                    raise
                write = self._counter_update(key, old, result, ttl_ms, now)
            try:
                await self._transact(fence, "increment", key, now, write)
                return result
            except _WriteRefused:
                continue  # another writer came in between: read again
        raise BackendError(f"dynamodb: increment on {key!r} kept racing concurrent writers")

    def _counter_update(
        self, key: str, old: Item, result: int, ttl_ms: int | None, now: int
    ) -> dict[str, Any]:
        """Write ``result`` over the counter ``old`` if the item is still that version."""
        values: Item = {
            ":n": as_n(result),
            ":one": as_n(1),
            ":ver": old[layout.VERSION],
            ":now": as_n(now),
            **self._t.deadline_values(ttl_ms, now),
        }
        update = "SET n = :n, ver = ver + :one"
        if ttl_ms is not None:
            update += ", exp_ms = :exp, expires_at = :expires_at"
        return {
            "Update": {
                "Key": self._store._key(key),
                "UpdateExpression": update + " REMOVE v",
                "ConditionExpression": SAME_LIVE_VERSION,
                "ExpressionAttributeValues": values,
            }
        }

    async def _require_fence(self, fence: Fence, key: str) -> None:
        """``FenceLostError`` if ``fence`` is gone (a refusal reports the lease first)."""
        now = self._t.now_ms()
        try:
            await self._transact(fence, "increment", key, now, {"ConditionCheck": {
                "Key": self._t.pk("ping", ""),
                "ConditionExpression": "attribute_not_exists(pk)",
            }})  # fmt: skip
        except _WriteRefused:
            return

    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        now = self._t.now_ms()
        write = {
            "Put": {
                "Item": self._store._item(key, new_value, expected_version + 1, ttl_ms, now),
                "ConditionExpression": layout.VERSION_MATCHES_AND_LIVE,
                "ExpressionAttributeValues": {
                    ":expected": as_n(expected_version),
                    ":now": as_n(now),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        try:
            await self._transact(fence, "compare_and_swap", key, now, write)
        except _WriteRefused as refused:
            old = refused.old
            if old is None or not is_live(old, now):
                return CasResult(ok=False, current_value=None, current_version=0)
            return CasResult(
                ok=False, current_value=value_of(old), current_version=int_of(old, layout.VERSION)
            )
        return CasResult(ok=True, current_value=new_value, current_version=expected_version + 1)

    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        item = {
            **self._t.pk(layout.INDEX_TAGS[index], key),
            layout.INDEX_PART: as_s(f"{self._t.prefix}#{layout.INDEX_TAGS[index]}"),
            layout.INDEX_AT: as_n(at_ms),
        }
        await self._transact(
            fence, f"index_{index}", key, self._t.now_ms(), {"Put": {"Item": item}}
        )

    async def index_remove(self, fence: Fence, index: str, key: str) -> None:
        write = {"Delete": {"Key": self._t.pk(layout.INDEX_TAGS[index], key)}}
        await self._transact(fence, f"remove_{index}_index", key, self._t.now_ms(), write)
