"""Redis Cluster: the client, its connections, and where release signals are heard.

Like Sentinel, Cluster is only a way to obtain connections: the store, the locks and every
script are the Redis backend's. :class:`ClusterClient` is redis-py's asyncio ``RedisCluster``
(which reads the slot map and runs the commands that go to every master, such as ``SCAN`` and
``SCRIPT LOAD``) whose keyed commands go through a :class:`~.cluster_routing.ClusterRouter`:
one auto-pipeline per master, ``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN`` followed.
:class:`ClusterSubscriber` subscribes to release signals on one node at a time: a classic
``PUBLISH`` reaches every node of a cluster, so any node will do. Placement and failover,
measured: docs/backends/redis-cluster.md.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.client import EMPTY_RESPONSE, NEVER_DECODE

from lockyard.config import RedisClusterConfig, RedisConfig

from .autopipeline import ConnectSettings
from .cluster_routing import CLUSTER_EPOCH, ClusterRouter, command_slot
from .pool import (
    HEALTH_CHECK_INTERVAL_S,
    SIGNAL_POOL_SIZE,
    LeanCheckout,
    PooledConnection,
    PooledSSLConnection,
    connection_kwargs,
    tls_kwargs,
)

T = TypeVar("T")

#: Commands sent through redis-py's own cluster paths at once (scans, script loads, probes).
ADMIN_CONCURRENCY = 4


class ClusterOwnConnection(PooledConnection):
    """A connection held for one operation (an acquisition confirmed with ``WAIT``); the
    acquire script reads its master's epoch (:data:`.cluster_routing.CLUSTER_EPOCH`)."""

    fencing_epoch = CLUSTER_EPOCH


class ClusterOwnSSLConnection(PooledSSLConnection):
    fencing_epoch = CLUSTER_EPOCH


class ClusterClient(RedisCluster):
    """redis-py's ``RedisCluster`` whose keyed commands go through a :class:`ClusterRouter`.

    Commands without keys, or sent to chosen nodes (``target_nodes``), run as redis-py runs
    them, at most :data:`ADMIN_CONCURRENCY` at a time: redis-py's per-node pools do not wait
    for a free connection but raise ``MaxConnectionsError``, so their size is that bound plus
    room for a slot-map read. Replies get redis-py's response callbacks.
    """

    #: The router of keyed commands; named as the single-server client's auto-pipeline, since
    #: the lock code sends acquisitions through it (``call_with_epoch``).
    auto_pipeline: ClusterRouter | None = None
    _admin: asyncio.Semaphore | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        router = self.auto_pipeline
        slot = None
        if router is not None and "target_nodes" not in options and NEVER_DECODE not in options:
            slot = command_slot(args)
        if router is None or slot is None:
            admin = self._admin
            if admin is None:
                admin = self._admin = asyncio.Semaphore(ADMIN_CONCURRENCY)
            async with admin:
                return await super().execute_command(*args, **options)
        try:
            response = await router.send(slot, args)
        except rx.ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        callback = self.response_callbacks.get(args[0])
        if callback is None:
            return response
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        result = callback(response, **options)
        return await result if inspect.isawaitable(result) else result

    async def on_own_connection(
        self, key: str, work: Callable[[AbstractConnection], Awaitable[T]]
    ) -> T:
        """``work`` on a connection to ``key``'s master held for it alone (the lock code's
        acquisitions confirmed with ``WAIT``)."""
        router = self.auto_pipeline
        if router is None:
            raise rx.ConnectionError("the Redis Cluster handle was closed")
        return await router.on_own_connection(key, work)

    async def aclose(self) -> None:
        router, self.auto_pipeline = self.auto_pipeline, None
        if router is not None:
            await router.aclose()
        await super().aclose()


class ClusterSubscriber:
    """Subscriptions on one node of the cluster at a time, the next node after each failure.

    Each ``pubsub()`` (the listener makes one per connection attempt) moves on to the next
    known node, starting at a random one, so the clients of a store spread over the nodes and
    a dead node is left at once.
    """

    def __init__(
        self, cluster: RedisCluster, kwargs: dict[str, Any], connection_class: type
    ) -> None:
        self._cluster = cluster
        self._kwargs = kwargs
        self._connection_class = connection_class
        self._clients: dict[str, Redis] = {}
        self._turn = random.randrange(1 << 16)

    def _next_node(self) -> ClusterNode:
        manager = self._cluster.nodes_manager
        known = manager.nodes_cache or manager.startup_nodes
        nodes = sorted(known.values(), key=lambda node: node.name)
        self._turn += 1
        return nodes[self._turn % len(nodes)]

    def pubsub(self) -> PubSub:
        node = self._next_node()
        client = self._clients.get(node.name)
        if client is None:
            pool = ConnectionPool(
                host=node.host,
                port=int(node.port),
                max_connections=SIGNAL_POOL_SIZE,
                connection_class=self._connection_class,
                **self._kwargs,
            )
            client = self._clients[node.name] = Redis.from_pool(pool)
        return client.pubsub()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


def server_settings(config: RedisClusterConfig) -> RedisConfig:
    """The cluster's client settings as those of one server: what the shared connection and
    TLS helpers of :mod:`.pool` and :mod:`.autopipeline` read (Redis Cluster has database 0)."""
    return RedisConfig(**config.model_dump(exclude={"backend", "nodes"}))


def cluster_clients(config: RedisClusterConfig) -> tuple[ClusterClient, ClusterSubscriber]:
    """(commands, release signals) of a ``redis+cluster://`` backend (not yet connected)."""
    settings = server_settings(config)
    kwargs = connection_kwargs(settings)
    tls = config.tls.enabled
    client = ClusterClient(
        startup_nodes=[ClusterNode(node.host, node.port) for node in config.nodes],
        # Open even while a failover leaves a slot uncovered: the router waits for it.
        require_full_coverage=False,
        # No retries of lost connections (a script may have run); the router follows MOVED,
        # ASK, TRYAGAIN and CLUSTERDOWN itself.
        retry=Retry(NoBackoff(), 0),
        # Per node: the commands above, a slot-map read and redis-py's COMMAND lookup.
        max_connections=ADMIN_CONCURRENCY + 2,
        username=config.username,
        password=kwargs["password"],
        client_name=kwargs["client_name"],
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        socket_timeout=None,
        socket_connect_timeout=config.operation_timeout,
        socket_keepalive=True,
        ssl=tls,
        **tls_kwargs(settings),
    )
    own_class = ClusterOwnSSLConnection if tls else ClusterOwnConnection

    def own_pool(node: ClusterNode) -> LeanCheckout:
        return LeanCheckout(
            max_connections=config.pool_size,
            timeout=None,  # the operation timeout bounds the wait for a free connection
            connection_class=own_class,
            **(kwargs | {"host": node.host, "port": int(node.port)}),
        )

    client.auto_pipeline = ClusterRouter(
        client,
        ConnectSettings.of(settings),
        own_pool,
        stale_after=config.operation_timeout / 2,
    )
    signal_class = PooledSSLConnection if tls else PooledConnection
    return client, ClusterSubscriber(client, kwargs, signal_class)
