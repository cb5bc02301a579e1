"""``operator-pod-kill``: ``operator-kill`` with the operator as the pods a user runs.

:class:`NodeCluster` is a :class:`~lockyard_dev.chaos.cluster.Cluster` on a real node
(:mod:`lockyard_dev.node`: two nodes, kubelets, containerd) with the operator installed by
``kubectl apply -k crds/ && kubectl apply -k deploy/``: two replicas, one per node, electing a
leader through their Lease. Its :meth:`NodeCluster.operator` hands the scenario an
:class:`OperatorPods` in place of an operator process: "kill" SIGKILLs the leading pod's
container from the host (no clean-up, no Lease release: a crash), "start" is what the kubelet
and the Deployment do by themselves (the container is restarted, the standby stands by), and
"healthy" is a new leader serving its ``/healthz``: the standby, or the restarted container,
once the killed term has expired.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from lockyard.kube.api import KubeApi
from lockyard_dev.chaos.cluster import Cluster
from lockyard_dev.chaos.driver import ScenarioUnavailable
from lockyard_dev.chaos.kube_result import KubeChaosResult, KubeChaosSettings
from lockyard_dev.chaos.operator_kill import OperatorKill
from lockyard_dev.cluster.operator_process import is_trouble
from lockyard_dev.node import Node
from lockyard_dev.node.deploy import (
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    container_pid,
    election_holder,
    install_operator,
    leader_pod,
    pods,
    uninstall_operator,
)
from lockyard_dev.node.node import NodeError
from lockyard_dev.node.progress import progress
from lockyard_dev.node.session import node_problems

NAME = "operator-pod-kill"
#: The kubelet's crash-loop back-off (10 s, then 20 s, ...) plus the killed term's 15 s.
HEALTHY_TIMEOUT_S = 120.0


class OperatorPods:
    """The operator Deployment's pods, as one operator the scenario kills and waits for."""

    def __init__(self, cluster: NodeCluster, log: Path) -> None:
        self.cluster = cluster
        self.node = cluster.node
        self.log_path = log
        #: The election identity killed last: a new leader must be another.
        self.killed = cluster.killed
        self.started_at = 0.0

    def start(self) -> OperatorPods:
        # The kubelet restarts a killed container, and a standby is already running.
        self.started_at = time.monotonic()
        return self

    def healthy(self) -> bool:
        holder = election_holder(self.node)
        return holder is not None and holder != self.killed and leader_pod(self.node) is not None

    async def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_S) -> float | None:
        """Seconds from :meth:`start` until a new leader served ``/healthz``, or None."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.healthy):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.2)
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL the leading pod's container from the host (nothing happens when no replica
        leads right now); the next :class:`OperatorPods` waits for another identity to lead."""
        leader = leader_pod(self.node)
        holder = election_holder(self.node)
        if leader is None:
            return
        self._save_logs()
        pid = container_pid(self.node, OPERATOR_NAMESPACE, leader["metadata"]["name"])
        os.kill(pid, signal.SIGKILL)
        self.cluster.killed = holder

    def stop(self) -> None:
        """Nothing: the cluster's teardown uninstalls the operator."""

    def _save_logs(self) -> None:
        chunks = []
        for pod in pods(self.node, OPERATOR_NAMESPACE, OPERATOR_SELECTOR):
            name = pod["metadata"]["name"]
            for previous in ("--previous=true", "--previous=false"):
                got = self.node.kubectl(
                    "logs", "-n", OPERATOR_NAMESPACE, name, previous, check=False
                )
                if got.returncode == 0 and got.stdout:
                    chunks.append(f"== {name} {previous}\n{got.stdout}")
        self.log_path.write_text("\n".join(chunks))

    def log(self) -> str:
        self._save_logs()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def troubles(self) -> list[str]:
        return [line for line in self.log().splitlines() if is_trouble(line)]


class NodeCluster(Cluster):
    """A :class:`Cluster` whose operator runs as pods on a node (see the module docstring)."""

    def __init__(self, node: Node, workdir: Path, api: KubeApi) -> None:
        assert node.plane is not None
        super().__init__(node.plane, workdir, api)
        self.node = node
        self.overlay = workdir / "overlay"
        #: The election identity the scenario killed last.
        self.killed: str | None = None

    @classmethod
    async def start(cls) -> NodeCluster:
        problems = node_problems()
        if problems is not None:
            raise ScenarioUnavailable(f"cannot run a node here: {problems}")
        workdir = Path(tempfile.mkdtemp(prefix="lockyard-chaos-node-"))
        node = Node(workdir / "node", nodes=2, say=progress("chaos node"))
        try:
            await asyncio.to_thread(node.start)
        except NodeError as exc:
            raise ScenarioUnavailable(str(exc).splitlines()[0]) from exc
        try:
            await asyncio.to_thread(install_operator, node, node.source, workdir / "overlay")
            api = await KubeApi.connect(str(node.kubeconfig))
        except BaseException:
            await asyncio.to_thread(node.stop)
            raise
        return cls(node, workdir, api)

    async def close(self, keep: bool = False) -> None:
        await self.api.close()
        await asyncio.to_thread(uninstall_operator, self.node, self.overlay)
        await asyncio.to_thread(self.node.stop)
        if keep:
            print(f"-- logs kept in {self.workdir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def operator_to_kill(self, namespace: str, log: Path) -> OperatorPods:
        # Every namespace is served (deploy/ says --all-namespaces), the scenario's included.
        return OperatorPods(self, log)


class OperatorPodKill(OperatorKill):
    """``operator-kill`` on a :class:`NodeCluster` of its own."""

    name = NAME

    @staticmethod
    def describe(settings: KubeChaosSettings) -> str:
        return (
            f"the leading operator pod's container killed with SIGKILL {settings.kills} time(s) "
            f"while it reconciles {settings.stores} new StateStores (two replicas on two nodes)"
        )

    @classmethod
    async def run_on(cls, cluster: Cluster, settings: KubeChaosSettings) -> KubeChaosResult:
        """Runs on a node cluster of its own (``cluster``, a bare control plane, is not used)."""
        node_cluster = await NodeCluster.start()
        result: KubeChaosResult | None = None
        try:
            result = await super().run_on(node_cluster, settings)
        finally:
            await node_cluster.close(keep=result is None or bool(result.violations))
        return result
