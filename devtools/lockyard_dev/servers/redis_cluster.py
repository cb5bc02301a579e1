"""A real Redis Cluster for tests, stress, chaos and benchmarks: masters with one replica each.

Every node is a ``redis-server --cluster-enabled yes`` (:class:`RedisServer` with cluster
settings) on free 127.0.0.1 ports, made into one cluster by ``redis-cli --cluster create
--cluster-replicas 1``; ``close()`` (or leaving ``with``) stops every node and deletes the
folder. Settings chosen for tests, and why:

- ``cluster-node-timeout`` is short (default 1 s), so a killed master is failed over in seconds;
- ``cluster-replica-validity-factor 0``: a replica fails over however long it was cut off (on a
  loaded machine a healthy replica can look stale, and would never be promoted);
- ``cluster-allow-replica-migration no``: a master emptied by resharding keeps its replica, so
  the topology only changes when a test changes it;
- an explicit ``cluster-port`` per node (the default, port + 10000, may be taken or past 65535);
- with ``tls``, the cluster bus and replication use TLS too, nodes presenting the client
  certificate to each other.

Admin helpers (``masters()``, ``kill()``, ``wait_failover()``, ``reshard()``) use the synchronous
redis-py client and ``redis-cli``; tests call them from a worker thread while operations run.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from redis import Redis
from redis.exceptions import RedisError

from lockyard_dev.servers.process import ServerHarness, ServerStartError, free_port, require_binary
from lockyard_dev.servers.redis import (
    HINT,
    HOST,
    LOCKYARD_ACL,
    RedisServer,
    TLSFiles,
    _Folder,
    _quote,
    _tls_client_kwargs,
)

#: What Lockyard's ACL user needs on a cluster beyond one server's rules: the slot map (redis-py
#: reads CLUSTER SLOTS, and COMMAND once), each master's own view of its slots (scans),
#: the node's state and epoch (the probe, the acquire script), and ASKING to follow a slot being
#: migrated (docs/backends/redis-cluster.md, *Credentials*).
CLUSTER_ACL = LOCKYARD_ACL + (
    " +cluster|slots +cluster|shards +cluster|nodes +cluster|info +command +asking"
)

SLOTS = 16384


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    port: int
    role: str  # "master" or "slave"
    master_id: str | None
    config_epoch: int
    failed: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeInfo]:
    """The nodes of a ``CLUSTER NODES`` reply (slots being migrated, ``[...]``, are left out)."""
    nodes = []
    for line in text.strip().splitlines():
        fields = line.split()
        flags = set(fields[2].split(","))
        port = int(fields[1].split("@", 1)[0].rsplit(":", 1)[1])
        slots = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            NodeInfo(
                node_id=fields[0],
                port=port,
                role="master" if "master" in flags else "slave",
                master_id=None if fields[3] == "-" else fields[3],
                config_epoch=int(fields[6]),
                failed="fail" in flags or "fail?" in flags,
                slots=tuple(slots),
            )
        )
    return nodes


def _tls_bus(tls: TLSFiles) -> tuple[str, ...]:
    """The cluster bus over TLS: nodes connect to each other as clients, and a node's server
    certificate is not valid for that, so they present the client certificate."""
    return (
        "tls-cluster yes",
        f"tls-client-cert-file {_quote(tls.client_cert_file)}",
        f"tls-client-key-file {_quote(tls.client_key_file)}",
    )


class RedisClusterSetup(ServerHarness):
    """``masters`` masters and ``replicas_per_master`` replicas each, on loopback ports."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        password: str | None = None,
        username: str | None = None,
        acl: str = CLUSTER_ACL,
        tls: TLSFiles | None = None,
        node_timeout_ms: int = 1000,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self._folder = _Folder(folder, "lockyard-cluster-")
        self.folder = self._folder.path
        self.password = password
        self.username = username
        self.tls = tls
        self.replicas_per_master = replicas_per_master
        self._cli = require_binary("redis-cli", HINT)
        #: Port of a master killed by :meth:`kill` -> the slot ranges it served.
        self._killed_slots: dict[int, tuple[tuple[int, int], ...]] = {}
        self.servers: list[RedisServer] = []
        for index in range((1 + replicas_per_master) * masters):
            settings = (
                "cluster-enabled yes",
                f"cluster-config-file nodes-{index}.conf",
                f"cluster-node-timeout {node_timeout_ms}",
                f"cluster-port {free_port()}",
                "cluster-replica-validity-factor 0",
                "cluster-allow-replica-migration no",
                *(_tls_bus(tls) if tls is not None else ()),
                *extra_config,
            )
            self.servers.append(
                RedisServer(
                    self.folder / f"node-{index}",
                    name=f"node-{index}",
                    password=password,
                    username=username,
                    acl=acl,
                    tls=tls,
                    extra_config=settings,
                )
            )

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> RedisClusterSetup:
        try:
            for server in self.servers:
                server.start()
            addresses = [f"{HOST}:{server.port}" for server in self.servers]
            self._redis_cli(
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
                timeout=timeout,
            )
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        """Stop every node and delete the folders (when the harness made them)."""
        self.stop()
        for server in self.servers:
            server.close()
        self._folder.remove()

    remove = close

    # -- access ----------------------------------------------------------------------------
    def url(self, prefix: str = "lockyard", *, as_user: bool = True, **params: str) -> str:
        """The Lockyard URL of the cluster: every node is a seed (the running ones first)."""
        auth = ""
        if self.password is not None:
            user = quote(self.username, safe="") if self.username and as_user else ""
            auth = f"{user}:{quote(self.password, safe='')}@"
        seeds = sorted(self.servers, key=lambda server: not server.running)
        hosts = ",".join(f"{HOST}:{server.port}" for server in seeds)
        query = {"prefix": prefix, **params}
        if self.tls is not None:
            query.setdefault("tls_ca_file", self.tls.ca_file)
        scheme = "rediss+cluster" if self.tls is not None else "redis+cluster"
        return f"{scheme}://{auth}{hosts}/?{urlencode(query)}"

    def server_on(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def _admin(self, server: RedisServer) -> Redis:
        return server.admin(socket_timeout=5, socket_connect_timeout=2)

    def nodes(self) -> list[NodeInfo]:
        """``CLUSTER NODES`` as the first running node that answers sees it."""
        errors = []
        for server in self.servers:
            if not server.running:
                continue
            try:
                with self._admin(server) as client:
                    return parse_cluster_nodes(str(client.execute_command("CLUSTER", "NODES")))
            except (RedisError, OSError) as exc:
                errors.append(f"{server.port}: {exc!r}")
        raise ServerStartError(f"no cluster node answers: {errors}")

    def masters(self) -> list[RedisServer]:
        """The running masters that serve slots, by port."""
        ports = sorted(n.port for n in self.nodes() if n.role == "master" and n.slots)
        return [self.server_on(port) for port in ports if self.server_on(port).running]

    def node_ids(self) -> dict[int, str]:
        """Port -> node id of every node."""
        return {node.port: node.node_id for node in self.nodes()}

    def slot_owners(self) -> dict[int, int]:
        """Slot -> port of the master serving it."""
        owners: dict[int, int] = {}
        for node in self.nodes():
            if node.role == "master":
                for first, last in node.slots:
                    for slot in range(first, last + 1):
                        owners[slot] = node.port
        return owners

    def replica_of(self, master: RedisServer) -> RedisServer:
        ids = self.node_ids()
        for node in self.nodes():
            if node.master_id == ids[master.port] and self.server_on(node.port).running:
                return self.server_on(node.port)
        raise KeyError(master.port)

    def config_epochs(self) -> dict[int, int]:
        """Port -> config epoch of every master serving slots."""
        return {n.port: n.config_epoch for n in self.nodes() if n.role == "master" and n.slots}

    def current_epoch(self) -> int:
        """The highest ``cluster_current_epoch`` the running nodes report."""
        epochs = []
        for server in self.servers:
            if server.running:
                with contextlib.suppress(RedisError, OSError), self._admin(server) as client:
                    epochs.append(
                        int(client.execute_command("CLUSTER INFO")["cluster_current_epoch"])
                    )
        if not epochs:
            raise ServerStartError("no cluster node answers")
        return max(epochs)

    def keys_per_master(self, pattern: str) -> Counter[int]:
        """How many keys matching ``pattern`` each master holds (SCAN on each)."""
        counts: Counter[int] = Counter()
        for master in self.masters():
            with self._admin(master) as client:
                counts[master.port] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        return counts

    # -- state -----------------------------------------------------------------------------
    def _node_state(self, server: RedisServer) -> tuple[str, str, str] | None:
        """(cluster_state, the node's CLUSTER SLOTS as text, replication link) or None."""
        try:
            with self._admin(server) as client:
                info = client.execute_command("CLUSTER INFO")
                slots = client.execute_command("CLUSTER", "SLOTS")
                replication = client.info("replication")
        except (RedisError, OSError):
            return None
        state = str(info.get("cluster_state"))
        link = (
            "up" if replication.get("role") == "master" else replication.get("master_link_status")
        )
        canonical = sorted((s[0], s[1], tuple(s[2][:2])) for s in slots)
        return state, repr(canonical), str(link)

    def healthy(self) -> bool:
        """Every running node says ``cluster_state:ok``, all agree on who serves which slot,
        every replica's link to its master is up, and each master has its replicas."""
        states = [self._node_state(server) for server in self.servers if server.running]
        if not states or any(state is None for state in states):
            return False
        seen = {state for state in states if state is not None}
        if any(state != "ok" or link != "up" for state, _, link in seen):
            return False
        if len({slots for _, slots, _ in seen}) != 1:
            return False
        nodes = [n for n in self.nodes() if self.server_on(n.port).running]
        masters = [n for n in nodes if n.role == "master" and n.slots]
        covered = sum(n.slot_count for n in masters)
        return covered == SLOTS and not any(n.failed for n in nodes)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ServerStartError):
                if self.healthy():
                    return
            time.sleep(0.1)
        logs = "\n".join(f"{s.name}: {s.process.log_path}" for s in self.servers)
        raise ServerStartError(f"the Redis Cluster was not healthy after {timeout:g}s\n{logs}")

    # -- faults and slot moves -------------------------------------------------------------
    def kill(self, server: RedisServer) -> None:
        """SIGKILL one node: it vanishes without a clean shutdown (a master's slots are
        remembered, so :meth:`wait_failover` knows which node took them over)."""
        with contextlib.suppress(ServerStartError):
            for node in self.nodes():
                if node.port == server.port and node.role == "master" and node.slots:
                    self._killed_slots[server.port] = node.slots
        server.kill()

    def wait_failover(self, old_master: RedisServer, timeout: float = 60.0) -> RedisServer:
        """Wait until another node serves the slots the killed ``old_master`` served, as a
        master that says so itself; returns it."""
        slots = set(self._killed_slots[old_master.port])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ServerStartError, RedisError, OSError):
                for node in self.nodes():
                    if (
                        node.role == "master"
                        and node.port != old_master.port
                        and slots
                        and slots <= set(node.slots)
                    ):
                        promoted = self.server_on(node.port)
                        with self._admin(promoted) as client:
                            if client.info("replication").get("role") == "master":
                                return promoted
            time.sleep(0.05)
        raise ServerStartError(f"no replica took over from {old_master.port} in {timeout:g}s")

    def restart(self, server: RedisServer, timeout: float = 60.0) -> None:
        """Start a stopped node again; it rejoins (a replaced master comes back as a replica)."""
        server.start(timeout)
        self.wait_healthy(timeout)

    def reshard(
        self, source: RedisServer, target: RedisServer, slots: int, *, timeout: float = 300.0
    ) -> None:
        """Move ``slots`` slots from ``source`` to ``target`` (``redis-cli --cluster reshard``),
        with the keys in them; blocks until done and every node agrees on the new map (redis-cli
        refuses to start while nodes disagree, as they do for a moment after a move)."""
        self.wait_healthy(timeout)
        ids = self.node_ids()
        self._redis_cli(
            "--cluster",
            "reshard",
            f"{HOST}:{source.port}",
            "--cluster-from",
            ids[source.port],
            "--cluster-to",
            ids[target.port],
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            timeout=timeout,
        )
        self.wait_healthy(timeout)

    def _redis_cli(self, *args: str, timeout: float) -> str:
        argv = [self._cli, *self._cli_auth(), *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"redis-cli {' '.join(args[:2])} timed out") from exc
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise ServerStartError(
                f"redis-cli {' '.join(args[:2])} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
            )
        return done.stdout

    def _cli_auth(self) -> list[str]:
        options: list[str] = []
        if self.password is not None:
            options += ["-a", self.password, "--no-auth-warning"]
        if self.tls is not None:
            kwargs: dict[str, Any] = _tls_client_kwargs(self.tls)
            options += [
                "--tls",
                "--cacert",
                kwargs["ssl_ca_certs"],
                "--cert",
                kwargs["ssl_certfile"],
                "--key",
                kwargs["ssl_keyfile"],
            ]
        return options
