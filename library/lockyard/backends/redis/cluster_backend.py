"""The Redis Cluster backend (``redis+cluster://``): the Redis backend over a cluster client.

Same store, locks and scripts as one server (:class:`~.backend.RedisBackend`); what differs is
where commands go (:mod:`.cluster`, :mod:`.cluster_routing`), how keys spread over the masters
(:data:`KIND_BUCKETS`, :mod:`.slots`), the key-space scans (:mod:`.cluster_keyspace`), the
probe (the cluster's own state) and the guarantees. docs/backends/redis-cluster.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis import exceptions as rx

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import RedisClusterConfig
from lockyard.errors import BackendConnectionError
from lockyard.guarantees import Guarantees

from .backend import RedisBackend
from .cluster import ClusterClient, ClusterSubscriber, cluster_clients
from .cluster_keyspace import ClusterKeyspace
from .keys import KeyLayout

#: Buckets each kind's records (and each time index) are spread over: 64 slots evenly spaced
#: over the slot space, so up to 64 masters share a kind, each about evenly (3 masters: 21 or
#: 22 buckets each). A scan of a kind reads every bucket: 64 scripts, sent in parallel.
KIND_BUCKETS = 64

CLUSTER_GUARANTEES = Guarantees(
    mutual_exclusion=(
        "while the master serving the lock's slot keeps its data; replication is asynchronous, "
        "so a lease acquired just before that master fails can be missing on the replica that "
        "takes over, and two holders can overlap"
    ),
    failover_safety=(
        "a master's failure (its replica takes over after cluster-node-timeout) can lose locks "
        "and writes it acknowledged before the replica copied them (wait_replicas keeps "
        "leases); slot moves (resharding) lose nothing: clients follow MOVED and ASK"
    ),
    fencing=(
        "token = the cluster's current epoch, as the serving master knows it when the "
        "acquiring script runs, << 40 | per-name counter: a replica promoted by a failover "
        "takes an epoch above every epoch its old master knew, so its tokens outrank the old "
        "master's; the counter moves with the lock's slot when slots are resharded"
    ),
    ttl_precision="1 ms",
    clock="the clock of the master serving the key's slot (PEXPIREAT from TIME, PX leases)",
    fifo_waiters=True,
)


class RedisClusterBackend(RedisBackend):
    """The Redis backend whose client is a :class:`~.cluster.ClusterClient`."""

    def __init__(
        self,
        config: RedisClusterConfig,
        client: ClusterClient,
        subscriber: ClusterSubscriber,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(
            "redis-cluster",
            config,
            client,  # type: ignore[arg-type]  # a RedisCluster offers the commands used
            subscriber,
            clock=clock,
            layout=KeyLayout(config.prefix, KIND_BUCKETS),
            keyspace=ClusterKeyspace(client),
            guarantees=CLUSTER_GUARANTEES,
        )
        self.cluster = client

    async def start(self) -> None:
        """Read the slot map (and check the credentials), load the scripts on every master,
        start the sweeper."""
        await self.first_contact(self._connect())
        self.start_sweeper()

    async def _connect(self) -> None:
        await self.cluster.initialize()
        await asyncio.gather(
            *(
                self.cluster.execute_command("SCRIPT LOAD", script.script)
                for script in self.scripts.by_name.values()
            )
        )

    async def ping(self) -> float:
        """``CLUSTER INFO`` of the first node that answers (the default node first): its round
        trip; ``BackendConnectionError`` unless that node says the cluster's state is ok."""
        return await self._run("ping", self._ping())

    async def _ping(self) -> float:
        cluster = self.cluster
        default = cluster.get_default_node()
        nodes = sorted(cluster.get_nodes(), key=lambda node: node is not default)
        failure: BaseException | None = None
        for node in nodes:
            started = time.perf_counter()
            try:
                info = await cluster.execute_command("CLUSTER INFO", target_nodes=node)
            except (rx.ConnectionError, OSError) as exc:  # a dead node: ask the next one
                failure = failure or exc
                continue
            latency = time.perf_counter() - started
            check_cluster_state(info)
            return latency
        raise failure or BackendConnectionError("redis cluster: no node is known")

    async def server_version(self) -> str:
        info = await self._run("server_version", self.cluster.info("server"))
        masters = len(self.cluster.get_primaries())
        return f"Redis {info.get('redis_version', 'unknown')} (cluster of {masters} masters)"


def check_cluster_state(info: dict[str, Any]) -> None:
    """Raise ``BackendConnectionError`` saying why, unless ``CLUSTER INFO`` says ``ok``."""
    state = info.get("cluster_state")
    if state == "ok":
        return
    raise BackendConnectionError(
        f"redis cluster: cluster_state is {state!r} (slots ok "
        f"{info.get('cluster_slots_ok')}, failing {info.get('cluster_slots_fail')}, "
        f"possibly failing {info.get('cluster_slots_pfail')} of "
        f"{info.get('cluster_slots_assigned')} assigned; {info.get('cluster_known_nodes')} "
        "known nodes)"
    )


async def open_cluster_backend(config: RedisClusterConfig) -> RedisClusterBackend:
    """Open a Redis Cluster backend: slot map read, scripts loaded, background tasks running."""
    client, subscriber = cluster_clients(config)
    backend = RedisClusterBackend(config, client, subscriber)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend
