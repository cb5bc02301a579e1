"""The faults ``make chaos`` injects, one scenario per backend.

A scenario names the backend to launch, how to break it and how to bring it back (blocking
calls on the launcher objects, run in a worker thread while the workload goes on), and what the
server is documented to lose, which decides how anomalies count:

- ``redis-kill``: SIGKILL, then a start on the same port and folder. The server runs with
  ``appendonly yes`` + ``appendfsync always``, so it must lose nothing it acknowledged.
- ``sentinel-failover``: ``SENTINEL FAILOVER`` promotes the replica. Replication is
  asynchronous, and the old master keeps accepting writes from clients that have not yet
  followed ``+switch-master``, so acknowledged writes and lock leases may be lost: such
  anomalies, overlapping lock holders and stale holders (older-epoch fencing tokens) are
  measured and reported, not counted as violations. A fencing token handed out twice is.
- ``cluster-master-kill``: SIGKILL to a master of a Redis Cluster (3 masters, 3 replicas); its
  replica takes over after ``cluster-node-timeout``, and the dead node is started again, as the
  new master's replica. As with Sentinel, asynchronous replication may lose acknowledged writes
  and leases (measured, not violations); a fencing token handed out twice is a violation.
- ``cluster-reshard``: ``redis-cli --cluster reshard`` moves a third of a master's slots to
  another master while the workload runs. Nothing may be lost and no lock held twice.
- ``postgres-restart``: a fast shutdown and a start on the same port; nothing committed may be
  lost.
- ``postgres-kill``: SIGKILL to the postmaster and every backend (a crash), then a start that
  recovers from the WAL; nothing committed may be lost either.
- ``dynamodb-restart``: the moto endpoint is stopped and started again. moto keeps everything in
  memory, so the restart loses every table: the driver re-creates the table (a new connection
  with ``create_table=true``) and the workload moves on to fresh keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lockyard_dev.servers.launch import Launched


@dataclass(frozen=True)
class Scenario:
    name: str
    backend: str
    description: str
    #: Break the server (blocking; the workload keeps running meanwhile).
    fault: Callable[[Launched], None]
    #: Bring it back after the outage (blocking), or None when the fault heals itself.
    restore: Callable[[Launched], None] | None = None
    durable: bool = False
    writes_may_be_lost: bool = False
    overlaps_expected: bool = False
    #: The restart loses every table: re-create it and go on with fresh keys.
    server_loses_data: bool = False


def _kill(launched: Launched) -> None:
    launched.server.kill()


def _start(launched: Launched) -> None:
    launched.server.start()


def _stop(launched: Launched) -> None:
    launched.server.stop()


def _failover(launched: Launched) -> None:
    launched.server.failover()


def _kill_cluster_master(launched: Launched) -> None:
    cluster = launched.server
    master = cluster.masters()[0]
    cluster.kill(master)
    cluster.wait_failover(master)


def _restart_cluster_nodes(launched: Launched) -> None:
    cluster = launched.server
    for server in cluster.servers:
        if not server.running:
            cluster.restart(server)


def _reshard(launched: Launched) -> None:
    cluster = launched.server
    masters = cluster.masters()
    cluster.reshard(masters[0], masters[1], 1800)


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "redis-kill",
            "redis",
            "redis-server (appendonly yes, appendfsync always) killed with SIGKILL, then "
            "started again on the same port",
            fault=_kill,
            restore=_start,
            durable=True,
        ),
        Scenario(
            "sentinel-failover",
            "sentinel",
            "SENTINEL FAILOVER: the replica is promoted, the old master becomes its replica",
            fault=_failover,
            writes_may_be_lost=True,
            overlaps_expected=True,
        ),
        Scenario(
            "cluster-master-kill",
            "redis-cluster",
            "a Redis Cluster master killed with SIGKILL: its replica takes over, then the dead "
            "node is started again as the new master's replica",
            fault=_kill_cluster_master,
            restore=_restart_cluster_nodes,
            writes_may_be_lost=True,
            overlaps_expected=True,
        ),
        Scenario(
            "cluster-reshard",
            "redis-cluster",
            "redis-cli --cluster reshard moves 1800 slots, with their keys, from one master to "
            "another while the workload runs",
            fault=_reshard,
        ),
        Scenario(
            "postgres-restart",
            "postgresql",
            "PostgreSQL fast shutdown, then started again on the same port",
            fault=_stop,
            restore=_start,
        ),
        Scenario(
            "postgres-kill",
            "postgresql",
            "every PostgreSQL process killed with SIGKILL (a crash), then started again on the "
            "same port (recovery from the WAL)",
            fault=_kill,
            restore=_start,
        ),
        Scenario(
            "dynamodb-restart",
            "dynamodb",
            "the moto endpoint stopped and started again on the same port (moto is in-memory: "
            "the table is re-created with create_table=true)",
            fault=_stop,
            restore=_start,
            server_loses_data=True,
        ),
    )
}
