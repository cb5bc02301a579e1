"""Operations over a whole key space: finding keys by pattern, removing many, reading many locks.

These are the only things the store and the locks do that are not one command on the keys of one
slot: the purge, the background sweep and ``list_held``. On one server (or a Sentinel-found
master) :class:`ServerKeyspace` does them as it always did, with ``SCAN`` and pipelines; on Redis
Cluster the same calls go to every master (``lockyard.backends.redis.cluster``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, cast

from redis.asyncio import Redis

from . import replies


class Keyspace(Protocol):
    """What the store and the locks need beyond single-slot commands."""

    #: Whether a slot's keys can be on two servers at once (Redis Cluster moves them one by
    #: one when it reshards): a key missing from one server may then be on the other.
    slots_move: bool

    def scan(
        self, match: str, *, count: int, kind: str | None = None, timeout: float
    ) -> AsyncIterator[str]:
        """Every key matching the glob ``match`` (of type ``kind``), each page of the scan
        bounded by ``timeout``."""
        ...

    async def unlink(self, counted: Sequence[str], uncounted: Sequence[str]) -> int:
        """Remove the keys; returns how many of ``counted`` existed."""
        ...

    async def evals(self, script: str, calls: Sequence[Sequence[str]]) -> list[Any]:
        """Run ``script`` once per entry of ``calls`` (its KEYS, no ARGV); the replies in order."""
        ...


class ServerKeyspace:
    """One server: ``SCAN`` pages, and one pipelined round trip for many commands."""

    slots_move = False

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def scan(
        self, match: str, *, count: int, kind: str | None = None, timeout: float
    ) -> AsyncIterator[str]:
        cursor = 0
        while True:
            async with asyncio.timeout(timeout):
                cursor, keys = await self._client.scan(cursor, match=match, count=count, _type=kind)
            for key in cast("list[str]", keys):
                yield key
            if cursor == 0:
                return

    async def unlink(self, counted: Sequence[str], uncounted: Sequence[str]) -> int:
        if not counted and not uncounted:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            if counted:
                pipe.unlink(*counted)
            if uncounted:
                pipe.unlink(*uncounted)
            results = await pipe.execute()
        return replies.count("purge", results[0]) if counted else 0

    async def evals(self, script: str, calls: Sequence[Sequence[str]]) -> list[Any]:
        if not calls:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for keys in calls:
                pipe.eval(script, len(keys), *keys)
            return list(await pipe.execute())
