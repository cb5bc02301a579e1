"""The node part of ``make demo``: a node with the operator installed as pods, and workload pods.

    with operator_on_node(workdir, say) as node:          # 2 nodes, operator's 2 replicas Ready
        start_workload(node, "lockyard-demo", "orders", ["invoice-1", "invoice-2"])
        ...  # node.kubectl("get", "pods,statestores,leases", "-A"), `lockyard locks -A`
    # Ctrl-C or not: StateStores, operator, pods, kubelet, containerd, control plane all gone

`node_problems` says (in one message) why this machine cannot run a node, for a caller that
falls back to running the operator as a host process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from lockyard_dev.node.deploy import (
    get_pod,
    install_operator,
    is_ready,
    uninstall_operator,
    wait_for,
    workload_pod_manifest,
)
from lockyard_dev.node.node import Node, check_host
from lockyard_dev.node.progress import Say, quiet


def node_problems() -> str | None:
    """Why a node cannot run here (not root, no cgroups, packages or binaries missing), or None."""
    problems = check_host()
    return "; ".join(problems) if problems else None


@contextlib.contextmanager
def operator_on_node(workdir: Path, say: Say = quiet, nodes: int = 2) -> Iterator[Node]:
    """``nodes`` started nodes in ``workdir`` (two: one per operator replica), the operator
    installed the user's way; torn down on exit."""
    node = Node(workdir / "node", nodes=nodes, say=say)
    overlay = workdir / "overlay"
    node.start()
    try:
        seconds = install_operator(node, node.source, overlay)
        say(f"operator running as pods ({seconds:.1f}s after kubectl apply -k deploy/)")
        yield node
    finally:
        say("removing StateStores and the operator, then stopping the node")
        uninstall_operator(node, overlay)
        node.stop()


def start_workload(
    node: Node, namespace: str, store: str, locks: Sequence[str], name: str = "orders-worker"
) -> str:
    """Run deploy/samples/workload/pod.yaml for ``store`` holding ``locks``; its pod's name."""
    manifest = workload_pod_manifest(node.source, name=name, store=store, hold=tuple(locks))
    node.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_for(lambda: is_ready(get_pod(node, namespace, name)), 120, f"pod {name} to be Ready")
    return name
