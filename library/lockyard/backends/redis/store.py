"""The Redis ``StateStore``: one ``HGET``/``HMGET``/``ZADD``/``ZREM``/``ZRANGEBYSCORE`` or one
script per operation (costs per operation: docs/backends/redis.md, *Operations*).

Scans and due-time reads read every bucket of the layout (one on a single server; several on
Redis Cluster, sent in parallel and merged: :mod:`.keys`); the purge and the sweep go through
the :class:`~.keyspace.Keyspace`, which reaches every master of a cluster."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from lockyard.errors import SerializationError
from lockyard.operations import OperationRunner
from lockyard.store import COUNTER_RULE, CasResult, StateStore, checked_sum, parse_counter

from . import replies
from .autopipeline import serves_lanes
from .keys import KeyLayout
from .keyspace import Keyspace, ServerKeyspace
from .scripts import Scripts

#: Members the sweep script examines per call, keys per ``SCAN`` page, keys per ``UNLINK``.
SWEEP_BATCH = 500
SCAN_COUNT = 1000
PURGE_BATCH = 500


def _ttl_arg(ttl_ms: int | None) -> int | str:
    return "" if ttl_ms is None else ttl_ms


class RedisStateStore(StateStore):
    def __init__(
        self,
        runner: OperationRunner,
        client: Redis,
        layout: KeyLayout,
        scripts: Scripts,
        keyspace: Keyspace | None = None,
    ) -> None:
        super().__init__(runner)
        self._client = client
        self._layout = layout
        self._scripts = scripts
        self._keyspace: Keyspace = keyspace or ServerKeyspace(client)
        self._timeout = runner.timeout
        self.serves_lanes = serves_lanes(client)

    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        created = await self._scripts.check_and_set(
            self._layout.for_key(key), (key, value, _ttl_arg(ttl_ms))
        )
        return replies.flag("check_and_set", created)

    async def _get(self, key: str) -> str | None:
        return replies.value("get", await self._client.hget(self._layout.data(key), "v"))

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        reply = await self._client.hmget(self._layout.data(key), ("v", "n"))
        return replies.versioned("get_versioned", reply)

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        reply = await self._scripts.set(self._layout.for_key(key), (key, value, _ttl_arg(ttl_ms)))
        replies.new_version("set", reply)

    async def _delete(self, key: str) -> bool:
        return replies.flag("delete", await self._scripts.delete(self._layout.for_key(key), (key,)))

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        result = await self._scripts.increment(
            self._layout.for_key(key), (key, delta, _ttl_arg(ttl_ms))
        )
        return counter_result(result, key, delta)

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        result = await self._scripts.compare_and_swap(
            self._layout.for_key(key), (key, expected_version, new_value, _ttl_arg(ttl_ms))
        )
        return cas_result(result, new_value)

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        return await self._scan(kind, key_prefix)

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        return await self._scan(kind, "")

    async def _scan(self, kind: str, key_prefix: str) -> list[tuple[str, str]]:
        buckets = self._layout.kind_buckets(kind)
        tidy = "" if self._keyspace.slots_move else "1"
        calls = [
            self._scripts.scan((index, expiries), (data, key_prefix, tidy))
            for data, index, expiries in buckets
        ]
        # One bucket on a single server: awaited directly, without gather's task.
        scans = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        found: list[tuple[str, str]] = []
        absent: dict[str, str] = {}  # data key -> key
        for (data, _, _), reply in zip(buckets, scans, strict=True):
            pairs, missing = replies.scanned("scan_keys", reply)
            found.extend(pairs)
            absent.update((data + key, key) for key in missing)
        if absent:
            found.extend(await self._read_absent(absent))
        return found

    async def _read_absent(self, absent: dict[str, str]) -> list[tuple[str, str]]:
        """The records a scan found indexed but not beside their index (``absent``: data key ->
        key). On Redis Cluster these are keys of a slot in migration, read through the router,
        which follows ``ASK`` to where each is now, and records that expired and wait for the
        sweep, which stay absent."""
        values = await asyncio.gather(*(self._client.hget(data, "v") for data in absent))
        return [
            (key, value)
            for key, reply in zip(absent.values(), values, strict=True)
            if (value := replies.value("scan_keys", reply)) is not None
        ]

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        reply = await self._client.zadd(self._layout.time_index(index, key), {key: at_ms})
        replies.count("index_add", reply)

    async def _index_remove(self, index: str, key: str) -> None:
        reply = await self._client.zrem(self._layout.time_index(index, key), key)
        replies.count("index_remove", reply)

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        indexes = self._layout.time_indexes(index)
        if len(indexes) == 1:
            due = await self._client.zrangebyscore(indexes[0], "-inf", now_ms)
            return replies.texts("index_due", due)
        dues = await asyncio.gather(
            *(self._client.zrangebyscore(bucket, "-inf", now_ms) for bucket in indexes)
        )
        return [key for keys in dues for key in replies.texts("index_due", keys)]

    async def _purge(self) -> int:
        removed = 0
        data: list[str] = []
        other: list[str] = []
        keyspace = self._keyspace
        async for key in keyspace.scan(
            self._layout.purge_pattern, count=SCAN_COUNT, timeout=self._timeout
        ):
            (data if self._layout.is_data_key(key) else other).append(key)
            if len(data) + len(other) >= PURGE_BATCH:
                removed += await keyspace.unlink(data, other)
                data, other = [], []
        return removed + await keyspace.unlink(data, other)

    async def sweep(self, *, timeout: float) -> int:
        """Drop index members of expired keys, for every kind; returns how many it examined.

        Each round trip runs under ``timeout``; the background task calls this (and the tests
        call it directly).
        """
        examined = 0
        async for expiry_key in self._keyspace.scan(
            self._layout.expiry_pattern, count=SCAN_COUNT, kind="zset", timeout=timeout
        ):
            base = expiry_key[: -len(":x")]
            while True:
                async with asyncio.timeout(timeout):
                    reply = await self._scripts.sweep(
                        (base + ":i", expiry_key), (base + ":d:", SWEEP_BATCH)
                    )
                count = replies.count("sweep", reply)
                examined += count
                if count < SWEEP_BATCH:
                    break
        return examined


def counter_result(reply: object, key: str, delta: int) -> int:
    """``increment``'s reply (plain or fenced): the new value, or why Redis refused."""
    value, refused = replies.counter("increment", reply)
    if value is None:
        raise _increment_error(key, refused, delta)
    return value


def cas_result(reply: object, new_value: str) -> CasResult:
    """``compare_and_swap``'s reply (plain or fenced)."""
    ok, current, version = replies.swapped("compare_and_swap", reply)
    return CasResult(ok=ok, current_value=new_value if ok else current, current_version=version)


def _increment_error(key: str, current: str, delta: int) -> SerializationError:
    """Why ``HINCRBY`` refused: the value is not a counter, or the sum leaves int64.

    ``HINCRBY`` reads exactly the grammar of :func:`lockyard.store.parse_counter`, so one of the
    two checks raises; the last line only answers a Redis that read integers differently.
    """
    try:
        checked_sum(parse_counter(current, key), delta, key)
    except SerializationError as exc:
        return exc
    return SerializationError(
        f"increment on {key!r} by {delta}: Redis refused the current value {current[:40]!r}: "
        f"{COUNTER_RULE}"
    )
