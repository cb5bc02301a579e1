"""A real Kubernetes node on this machine for tests and the demo: the project's control plane
plus containerd, runc, kubelet and kube-scheduler, with images built offline.

Loopback only: the node is ``127.0.0.1``, every pod runs with ``hostNetwork`` (admission sets it),
no bridge or pod network exists and no Service ClusterIP is ever dialled. Needs root and cgroups;
`check_host` says what is missing. See docs/node.md for the set-up and its measured costs.
"""

from lockyard_dev.node.images import OPERATOR_REF, WORKLOAD_REF, NodeImages, build_images
from lockyard_dev.node.node import Node, NodeError, check_host

__all__ = [
    "OPERATOR_REF",
    "WORKLOAD_REF",
    "Node",
    "NodeError",
    "NodeImages",
    "build_images",
    "check_host",
]
