"""The key space of a Redis Cluster: scans fanned out to every master, keys removed per slot.

The purge, the sweep and ``list_held`` are the only operations that look for keys instead of
naming them. :meth:`ClusterKeyspace.scan` runs ``SCAN`` on every master in parallel, one page
from each per round, and merges what they return. A key whose slot moves during a pass may be
missed (scanned on its new master before it arrived, on its old one after it left), so a pass
counts only if every master reported the same slots, and none in migration, before and after
it; otherwise another pass runs (at most :data:`SCAN_PASSES`) and keys already given are not
repeated. Removing and reading many keys sends one command per slot, all at once, through the
router: each follows ``MOVED``/``ASK`` like any other command.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from redis.asyncio.cluster import ClusterNode

from .cluster import ClusterClient
from .replies import count
from .slots import key_slot

#: Most passes one scan makes while slots keep moving (then it gives what it found).
SCAN_PASSES = 3

#: What a master says of its own slots: (node id, config epoch, slot ranges, migrations).
_SlotView = tuple[str, str, tuple[str, ...], tuple[str, ...]]


class ClusterKeyspace:
    """:class:`~.keyspace.Keyspace` over every master of a :class:`ClusterClient`."""

    slots_move = True

    def __init__(self, client: ClusterClient) -> None:
        self._client = client

    async def scan(
        self, match: str, *, count: int, kind: str | None = None, timeout: float
    ) -> AsyncIterator[str]:
        given: set[str] = set()
        for _ in range(SCAN_PASSES):
            before = await self._slot_views(timeout)
            async for key in self._one_pass(match, count, kind, timeout):
                if key not in given:
                    given.add(key)
                    yield key
            after = await self._slot_views(timeout)
            if before == after and not any(view[3] for view in after.values()):
                return

    async def _one_pass(
        self, match: str, count: int, kind: str | None, timeout: float
    ) -> AsyncIterator[str]:
        cursors: dict[str, tuple[ClusterNode, int]] = {
            node.name: (node, 0) for node in self._client.get_primaries()
        }
        while cursors:
            typed = ("TYPE", kind) if kind else ()
            async with asyncio.timeout(timeout):
                pages = await asyncio.gather(
                    *(
                        self._client.execute_command(
                            "SCAN", cursor, "MATCH", match, "COUNT", count, *typed,
                            target_nodes=node,
                        )
                        for node, cursor in cursors.values()
                    )
                )  # fmt: skip
            following: dict[str, tuple[ClusterNode, int]] = {}
            for (name, (node, _)), page in zip(list(cursors.items()), pages, strict=True):
                # redis-py's cluster client gives ({node name: next cursor}, keys).
                next_cursors, keys = cast("tuple[dict[str, int], list[str]]", page)
                for key in keys:
                    yield key
                cursor = int(next_cursors[name])
                if cursor:
                    following[name] = (node, cursor)
            cursors = following

    async def _slot_views(self, timeout: float) -> dict[str, _SlotView]:
        """Each master's own line of ``CLUSTER NODES``: who it is, its epoch, its slots."""
        primaries = self._client.get_primaries()
        async with asyncio.timeout(timeout):
            replies = await asyncio.gather(
                *(
                    self._client.execute_command("CLUSTER NODES", target_nodes=node)
                    for node in primaries
                )
            )
        views: dict[str, _SlotView] = {}
        for node, nodes in zip(primaries, replies, strict=True):
            for line in nodes.values():
                if "myself" in line["flags"]:
                    views[node.name] = (
                        str(line["node_id"]),
                        str(line["epoch"]),
                        tuple(str(slot) for slot in line["slots"]),
                        tuple(str(move) for move in line["migrations"]),
                    )
        return views

    async def unlink(self, counted: Sequence[str], uncounted: Sequence[str]) -> int:
        counted_groups = _by_slot(counted)
        replies = await asyncio.gather(
            *(self._client.execute_command("UNLINK", *keys) for keys in counted_groups),
            *(self._client.execute_command("UNLINK", *keys) for keys in _by_slot(uncounted)),
        )
        return sum(count("purge", reply) for reply in replies[: len(counted_groups)])

    async def evals(self, script: str, calls: Sequence[Sequence[str]]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(self._client.execute_command("EVAL", script, len(keys), *keys) for keys in calls)
            )
        )


def _by_slot(keys: Sequence[str]) -> list[list[str]]:
    groups: defaultdict[int, list[str]] = defaultdict(list)
    for key in keys:
        groups[key_slot(key)].append(key)
    return list(groups.values())
