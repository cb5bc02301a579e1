"""Sending each command of a Redis Cluster backend to the master that serves its slot.

:class:`ClusterRouter` keeps one auto-pipeline (:mod:`.autopipeline`) per master and reads the
slot map from redis-py's ``RedisCluster`` (its ``NodesManager``). A command whose keys are in one
slot goes to that slot's master; the replies that mean "not executed here" are followed, so
callers never see them while slots move or a replica takes over:

- ``MOVED``: the slot has a new master; the map is patched, refreshed in the background, and the
  command re-sent there.
- ``ASK``: the slot is being migrated and the keys are already on the importing master;
  ``ASKING`` and the command go there together, on one connection (redis-py's cluster client
  sends them on two pooled connections, which can lose the ``ASKING``).
- ``TRYAGAIN`` (a multi-key command while its slot's keys are split between two masters),
  ``CLUSTERDOWN`` (a master failed and no replica has taken over yet) and a script stopped for
  touching a key not yet (or no longer) local: re-sent after a short, growing pause.

Each retry is safe because the server executed nothing. Everything else is the caller's answer,
and a lost connection is never retried (a script whose reply was lost may have run): it raises,
and the slot map is refreshed in the background so the next call finds the new master. The
caller's operation timeout bounds the whole loop.

Commands whose keys span slots are refused before sending (Lockyard's layout never builds one).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection

from lockyard._tasks import stop_task
from lockyard.errors import BackendError

from .autopipeline import AutoPipeline, ConnectSettings, FixedAddress
from .generations import Generations
from .pool import LeanCheckout, command
from .slots import key_slot

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The fencing epoch a cluster client passes to the acquire script: "the cluster's current
#: epoch as this master knows it, read as the script runs" (``_FENCING_EPOCH`` in :mod:`.scripts`).
CLUSTER_EPOCH = -1
#: The first pause before re-sending after TRYAGAIN or CLUSTERDOWN, and its cap.
RETRY_PAUSE_S = 0.005
RETRY_PAUSE_CAP_S = 0.1
#: The least time between two background reads of the slot map.
REFRESH_INTERVAL_S = 0.1

#: Commands whose keys are every argument after the name.
_ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH"})
#: Commands whose only key is the first argument.
_FIRST_KEY = frozenset(
    {
        "GET", "SET", "PEXPIRE", "PEXPIREAT", "PTTL", "PERSIST", "INCR", "INCRBY", "HGET",
        "HMGET", "HSET", "HDEL", "HGETALL", "HINCRBY", "ZADD", "ZREM", "ZSCORE", "ZRANGE",
        "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZCARD", "TYPE",
    }
)  # fmt: skip
_SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})

#: The error a script gets when it touches a key its node does not serve (a slot in migration).
_NON_LOCAL = "non local key"


class CrossSlotError(BackendError):
    """A command's keys are in different slots: Redis Cluster cannot run it as one command."""


def command_slot(args: tuple[Any, ...]) -> int | None:
    """The slot of a command's keys; ``None`` for a command without keys (or one we do not
    know the keys of: redis-py's cluster client routes those)."""
    name = args[0]
    if name in _FIRST_KEY:
        return key_slot(args[1])
    if name in _SCRIPTS:
        keys = args[3 : 3 + int(args[2])]
    elif name in _ALL_KEYS:
        keys = args[1:]
    else:
        return None
    if not keys:
        return None
    slot = key_slot(keys[0])
    for key in keys[1:]:
        if key_slot(key) != slot:
            raise CrossSlotError(f"redis cluster: {name} on keys in different slots: {keys!r}")
    return slot


class ClusterRouter:
    """Routes commands to the masters of a ``RedisCluster`` over one auto-pipeline each."""

    def __init__(
        self,
        cluster: RedisCluster,
        settings: ConnectSettings,
        pool_factory: Callable[[ClusterNode], LeanCheckout],
        *,
        stale_after: float,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._pool_factory = pool_factory
        self._stale_after = stale_after
        self._pipelines: dict[str, AutoPipeline] = {}
        #: Pipelines of departed nodes with replies still awaited; closed with the client.
        self._departed: list[AutoPipeline] = []
        self._pools: dict[str, LeanCheckout] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = -math.inf
        #: Replies followed, by kind (``moved``, ``ask``, ``tryagain``, ...): for tests and docs.
        self.followed: Counter[str] = Counter()

    # -- where ------------------------------------------------------------------------------
    def master_of(self, slot: int) -> ClusterNode:
        node: ClusterNode = self._cluster.nodes_manager.get_node_from_slot(slot)
        return node

    def pipeline_of(self, node: ClusterNode) -> AutoPipeline:
        pipeline = self._pipelines.get(node.name)
        if pipeline is None:
            pipeline = AutoPipeline(
                self._settings,
                FixedAddress(node.host, int(node.port)),
                Generations(),
                stale_after=self._stale_after,
            )
            self._pipelines[node.name] = pipeline
        return pipeline

    def requests_by_node(self) -> dict[str, int]:
        """Commands written so far on the pipelines of each master (diagnostics, tests)."""
        return {
            name: sum(connection.requests for connection in pipeline.connections)
            for name, pipeline in self._pipelines.items()
        }

    def pool_of(self, node: ClusterNode) -> LeanCheckout:
        """The pool of connections held one operation at a time (``WAIT``) to ``node``."""
        pool = self._pools.get(node.name)
        if pool is None:
            pool = self._pools[node.name] = self._pool_factory(node)
        return pool

    def _node_at(self, host: str, port: int) -> ClusterNode:
        manager = self._cluster.nodes_manager
        node: ClusterNode | None = manager.get_node(host=host, port=port)
        if node is None:
            node = ClusterNode(host, port, "primary", **manager.connection_kwargs)
            manager.set_nodes(manager.nodes_cache, {node.name: node})
        return node

    # -- sending ----------------------------------------------------------------------------
    async def call(self, args: tuple[Any, ...]) -> Any:
        """One command (what :class:`.autopipeline.AutoPipeline` offers, for the lock code)."""
        slot = command_slot(args)
        if slot is not None:
            return await self.send(slot, args)
        if str(args[0]).upper() == "SCRIPT":  # SCRIPT LOAD: every master may run it
            return await self._cluster.execute_command(f"SCRIPT {args[1]}".upper(), *args[2:])
        return await self._cluster.execute_command(*args)

    async def call_with_epoch(self, build: Callable[[int], tuple[Any, ...]]) -> Any:
        """The command ``build(epoch)``: on a cluster the script reads its master's epoch."""
        return await self.call(build(CLUSTER_EPOCH))

    async def send(self, slot: int, args: tuple[Any, ...]) -> Any:
        """Send a command on ``slot``'s master, following what means "not executed here"."""
        asking: ClusterNode | None = None
        pause = RETRY_PAUSE_S
        while True:
            try:
                node = asking or self.master_of(slot)
            except rx.SlotNotCoveredError:
                pause = await self._wait_for_map(pause)
                continue
            connection = self.pipeline_of(node).pick()
            if asking is not None:
                # Written together, in order, on one connection: the ASKING applies to it.
                connection.send(("ASKING",)).add_done_callback(_retrieve)
                asking = None
            future = connection.send(args)
            try:
                return await future
            except asyncio.CancelledError:
                connection.abandon(future)
                raise
            except (rx.RedisError, OSError) as exc:
                followed = await self._follow(exc, pause)
                if followed is None:
                    raise
                asking, pause = followed

    async def on_own_connection(
        self, key: str, work: Callable[[AbstractConnection], Awaitable[T]]
    ) -> T:
        """``work`` on a connection to ``key``'s master held for it alone, redirects followed
        as in :meth:`send` (``work`` must send nothing before its first keyed command)."""
        slot = key_slot(key)
        asking: ClusterNode | None = None
        pause = RETRY_PAUSE_S
        while True:
            try:
                pool = self.pool_of(asking or self.master_of(slot))
            except rx.SlotNotCoveredError:
                pause = await self._wait_for_map(pause)
                continue
            connection = await pool.get_connection()
            try:
                if asking is not None:
                    await command(connection, "ASKING")
                    asking = None
                return await work(connection)
            except (rx.RedisError, OSError) as exc:
                followed = await self._follow(exc, pause)
                if followed is None:
                    raise
                asking, pause = followed
            finally:
                await pool.release(connection)

    async def _follow(
        self, exc: rx.RedisError | OSError, pause: float
    ) -> tuple[ClusterNode | None, float] | None:
        """After ``exc`` ended a command: if it means "not executed here", count it, wait as it
        asks, and return where to send the command again (a node to send ASKING to first, or
        ``None`` for the slot's master) and the next pause; otherwise ``None`` (raise it)."""
        if isinstance(exc, rx.MovedError):  # before AskError: a MovedError is one too
            self.followed["moved"] += 1
            await self._cluster.nodes_manager.move_slot(exc)
            self.refresh_soon()
            return None, pause
        if isinstance(exc, rx.AskError):
            self.followed["ask"] += 1
            return self._node_at(exc.host, int(exc.port)), pause
        if isinstance(exc, rx.TryAgainError):
            self.followed["tryagain"] += 1
            await asyncio.sleep(pause)
            return None, min(pause * 2, RETRY_PAUSE_CAP_S)
        if isinstance(exc, rx.ClusterDownError):
            self.followed["down"] += 1
            return None, await self._wait_for_map(pause)
        if isinstance(exc, rx.ResponseError) and _NON_LOCAL in str(exc):
            self.followed["non_local"] += 1
            return None, await self._wait_for_map(pause)
        if isinstance(exc, rx.ConnectionError | OSError):
            self.refresh_soon()  # a failover may follow: find the new master soon
        return None

    # -- the slot map -----------------------------------------------------------------------
    async def _wait_for_map(self, pause: float) -> float:
        """The map is missing a slot, or the cluster is down: re-read it, pause; the next
        pause."""
        self.refresh_soon()
        await asyncio.sleep(pause)
        return min(pause * 2, RETRY_PAUSE_CAP_S)

    def refresh_soon(self) -> None:
        """Re-read the slot map in the background (at most every ``REFRESH_INTERVAL_S``)."""
        running = self._refresh
        if running is not None and not running.done():
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._refreshed_at + REFRESH_INTERVAL_S - loop.time())
        self._refresh = loop.create_task(self._refresh_after(delay), name="lockyard-cluster-map")

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._cluster.nodes_manager.initialize()
        except Exception as exc:  # every seed unreachable, or a half-made map: try again later
            logger.debug("redis cluster: reading the slot map failed: %r", exc)
        finally:
            self._refreshed_at = asyncio.get_running_loop().time()
        self._retire_departed()

    def _retire_departed(self) -> None:
        """Close the pipelines of nodes that left the map (their pools close with the client)."""
        known = set(self._cluster.nodes_manager.nodes_cache)
        for name in [name for name in self._pipelines if name not in known]:
            pipeline = self._pipelines.pop(name)
            pipeline.retire()
            self._departed.append(pipeline)
        self._departed = [pipeline for pipeline in self._departed if not pipeline.drained]

    async def aclose(self) -> None:
        refresh, self._refresh = self._refresh, None
        if refresh is not None:
            await stop_task(refresh)
        pipelines = [*self._pipelines.values(), *self._departed]
        self._pipelines, self._departed = {}, []
        for pipeline in pipelines:
            await pipeline.aclose()
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.disconnect()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done callback of an ``ASKING`` sent ahead of a command: its error (if any) is the
    command's too, so it is only marked as seen."""
    if not future.cancelled():
        future.exception()
