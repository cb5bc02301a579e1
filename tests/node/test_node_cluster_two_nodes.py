"""The session's cluster: two nodes (127.0.0.1 and 127.0.0.2), each with its own containerd,
kubelet and cgroup root, shown with two replicas of a small HTTP server that declare the same
host port and bind their pod IP (what the operator's replicas do; see docs/node.md)."""

from __future__ import annotations

from lockyard_dev.node import WORKLOAD_REF, Node
from lockyard_dev.node.deploy import is_ready, pods, wait_for

PORT = 18081


def test_both_nodes_are_ready_and_named_by_their_loopback_address(node: Node) -> None:
    listed = node.kubectl(
        "get", "nodes", "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.addresses[0].address}"
        "={.status.conditions[?(@.type=='Ready')].status} {end}",
    ).stdout.split()  # fmt: skip
    assert sorted(listed) == ["127.0.0.1=127.0.0.1=True", "127.0.0.2=127.0.0.2=True"]


def test_two_replicas_with_the_same_host_port_run_on_one_machine(node: Node) -> None:
    """The scheduler puts one replica on each node (a host port is free once per node); each
    binds its node's address, so both probes pass on one shared network namespace."""
    node.kubectl(
        "apply", "-f", "-",
        input=f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: twin, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: twin}}}}
  template:
    metadata: {{labels: {{app: twin}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: {WORKLOAD_REF}
        command: ["python", "-m", "http.server", "--bind", "$(POD_IP)", "--directory", "/tmp",
                  "{PORT}"]
        env:
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        ports: [{{name: http, containerPort: {PORT}}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 2}}
        livenessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 5}}
""",
    )  # fmt: skip

    def both_ready() -> bool:
        current = pods(node, "default", "app=twin")
        return len(current) == 2 and all(is_ready(p) for p in current)

    wait_for(both_ready, 120, "both replicas to be Ready")
    placed = sorted(
        (p["spec"]["nodeName"], p["status"]["podIP"]) for p in pods(node, "default", "app=twin")
    )
    assert placed == [("127.0.0.1", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")]
    node.kubectl("delete", "deployment", "twin", "-n", "default", "--cascade=foreground")
