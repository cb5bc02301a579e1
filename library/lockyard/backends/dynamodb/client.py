"""The aiobotocore client bound to the backend's table, shared by the store and the locks:
requests (re-sent after throttling), conditional writes, paged queries, and the clock."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lockyard.clock import Clock
from lockyard.config import DynamoDBConfig

from . import layout
from .errors import error_code
from .items import Item, Response, as_n, as_s
from .throttling import retry_throttled


@dataclass(frozen=True, slots=True)
class ConditionFailed:
    """A conditional write whose condition was false; ``old`` is the item it was checked on."""

    old: Item | None


class TableClient:
    """The client and table shared by the store and the locks: calls, retries, time."""

    def __init__(
        self, client: Any, config: DynamoDBConfig, clock: Clock, rand: Callable[[], float]
    ) -> None:
        self.client = client
        self.name = config.table
        self.prefix = config.prefix
        self.budget_s = config.operation_timeout
        self.clock = clock
        self._rand = rand

    def now_ms(self) -> int:
        return int(self.clock.wall() * 1000)

    def pk(self, tag: str, name: str) -> Item:
        return {layout.PK: as_s(f"{self.prefix}#{tag}#{name}")}

    async def call(self, method: Callable[..., Awaitable[Response]], **params: Any) -> Response:
        """One request on the table (``TableName`` is added)."""
        return await self.send(method, TableName=self.name, **params)

    async def send(self, method: Callable[..., Awaitable[Response]], **params: Any) -> Response:
        """One request; re-sent only after throttling (which DynamoDB did not apply)."""
        return await retry_throttled(
            lambda: method(**params), self.budget_s, self.clock.sleep, self._rand
        )

    async def write(
        self, method: Callable[..., Awaitable[Response]], **params: Any
    ) -> Response | ConditionFailed:
        """A conditional write: its response, or :class:`ConditionFailed` with the old item."""
        try:
            return await self.call(method, **params)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old: Item | None = exc.response.get("Item") or None
            return ConditionFailed(old)

    async def query(self, **params: Any) -> list[Item]:
        """Every item of a Query, page by page (one request per 1 MB)."""
        items: list[Item] = []
        while True:
            response = await self.call(self.client.query, **params)
            items.extend(response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            params["ExclusiveStartKey"] = last

    def deadline_values(self, ttl_ms: int | None, now_ms: int) -> Item:
        if ttl_ms is None:
            return {}
        deadline = now_ms + ttl_ms
        return {":exp": as_n(deadline), ":expires_at": as_n(math.ceil(deadline / 1000))}
