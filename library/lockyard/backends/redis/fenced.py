"""Redis fenced writes: one script that checks the guard's lease, then writes.

The scripts are in :mod:`.fenced_scripts`. A script may only touch keys of one hash slot on
Redis Cluster, and a fenced write touches the lease's key and the written key's keys: on one
server or a Sentinel-found master any lease fences any key, but on a cluster the two must share
a slot, or :class:`~lockyard.errors.FenceSlotError` says so before anything is sent (how keys
map to slots: docs/backends/redis-cluster.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis, RedisCluster

from lockyard.errors import FenceSlotError
from lockyard.fenced_writes import Fence, FencedWrites, fence_lost
from lockyard.store import CasResult

from . import replies
from .fenced_scripts import FENCE_ERROR, FENCED_SCRIPTS
from .keys import KeyLayout
from .permits import PermitKeys
from .scripts import LuaScript
from .slots import key_slot
from .store import _ttl_arg, cas_result, counter_result


class RedisFencedWrites(FencedWrites):
    def __init__(self, client: Redis, layout: KeyLayout) -> None:
        self._layout = layout
        self._permit_keys = {space: PermitKeys(layout, space) for space in ("semaphore", "rwlock")}
        self._scripts = {fenced: LuaScript(client, text) for fenced, text in FENCED_SCRIPTS.items()}
        #: On a cluster every script's keys must share a slot (checked before sending).
        self._one_slot = isinstance(client, RedisCluster)

    def _lease_key(self, fence: Fence) -> str:
        if fence.kind == "lock":
            return self._layout.lease(fence.name)
        return self._permit_keys[fence.kind].holders(fence.name)

    async def _call(
        self,
        fence: Fence,
        operation: str,
        key: str,
        data_keys: Sequence[str],
        args: Sequence[str | int],
    ) -> Any:
        keys = (self._lease_key(fence), *data_keys)
        if self._one_slot:
            _check_one_slot(fence, key, keys)
        script = self._scripts[fence.kind, operation]
        try:
            return await script(keys, (fence.owner, *args))
        except rx.ResponseError as exc:
            if str(exc).startswith(FENCE_ERROR + " "):
                raise fence_lost(fence, operation, key) from None
            raise

    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        keys = self._layout.for_key(key)
        created = await self._call(
            fence, "check_and_set", key, keys, (key, value, _ttl_arg(ttl_ms))
        )
        return replies.flag("check_and_set", created)

    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None:
        reply = await self._call(
            fence, "set", key, self._layout.for_key(key), (key, value, _ttl_arg(ttl_ms))
        )
        replies.new_version("set", reply)

    async def delete(self, fence: Fence, key: str) -> bool:
        reply = await self._call(fence, "delete", key, self._layout.for_key(key), (key,))
        return replies.flag("delete", reply)

    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int:
        keys = self._layout.for_key(key)
        result = await self._call(fence, "increment", key, keys, (key, delta, _ttl_arg(ttl_ms)))
        return counter_result(result, key, delta)

    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        keys = self._layout.for_key(key)
        args = (key, expected_version, new_value, _ttl_arg(ttl_ms))
        return cas_result(await self._call(fence, "compare_and_swap", key, keys, args), new_value)

    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        index_key = self._layout.time_index(index, key)
        replies.count(
            "index_add", await self._call(fence, "index_add", key, (index_key,), (key, at_ms))
        )

    async def index_remove(self, fence: Fence, index: str, key: str) -> None:
        index_key = self._layout.time_index(index, key)
        replies.count(
            "index_remove", await self._call(fence, "index_remove", key, (index_key,), (key,))
        )


def _check_one_slot(fence: Fence, key: str, keys: Sequence[str]) -> None:
    slots = {key_slot(k) for k in keys}
    if len(slots) > 1:
        raise FenceSlotError(
            f"fenced write on {key!r} guarded by {fence.describe()}: on Redis Cluster the "
            f"guard's lease ({keys[0]!r}) and the key ({keys[1]!r}) must share a hash slot, "
            f"and they are in slots {sorted(slots)}; co-locate them as "
            "docs/backends/redis-cluster.md describes, or fence outside the store"
        )
