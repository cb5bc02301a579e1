"""The operator as pods on a real kubelet, installed with ``kubectl apply -k crds/ && kubectl
apply -k deploy/`` (only the image swapped for the local build; the node's admission policies
add hostNetwork, imagePullPolicy Never and the API server's loopback address)."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from typing import Any

from lockyard_dev.node import Node
from lockyard_dev.node.deploy import (
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    container_pid,
    get_pod,
    is_ready,
    pods,
    probe_counts,
    ready_pods,
    wait_for,
)

NS = OPERATOR_NAMESPACE


def _active(node: Node) -> dict[str, Any]:
    return ready_pods(node, NS, OPERATOR_SELECTOR)[0]


def _http_get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def test_operator_pod_runs_non_root_on_a_read_only_root(operator: Node) -> None:
    pod = _active(operator)
    name = pod["metadata"]["name"]
    assert pod["spec"]["hostNetwork"] is True  # set by the node's admission policy
    assert pod["spec"]["nodeName"] == operator.name
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator.kubectl("exec", "-n", NS, name, "--", "id", "-u").stdout.strip() == "65532"
    denied = operator.kubectl("exec", "-n", NS, name, "--", "touch", "/opt/x", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    # /tmp is the one writable place (an emptyDir).
    operator.kubectl("exec", "-n", NS, name, "--", "touch", "/tmp/x")


def test_kubelet_calls_the_probes(operator: Node) -> None:
    pod = _active(operator)
    name = pod["metadata"]["name"]
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    assert status["started"] is True
    # The kubelet's own count of the probes it ran against this pod (prober_probe_total).
    before = probe_counts(operator, NS, name)
    assert before.get(("Readiness", "successful"), 0) >= 1, before
    wait_for(
        lambda: (
            probe_counts(operator, NS, name).get(("Readiness", "successful"), 0)
            > before[("Readiness", "successful")]
            and probe_counts(operator, NS, name).get(("Liveness", "successful"), 0) >= 1
        ),
        60,
        "the kubelet to run more readiness probes and a liveness probe",
    )
    after = probe_counts(operator, NS, name)
    # Readiness may fail while the operator starts (nothing listens yet); once Ready, none fails.
    failed = {k: v - before.get(k, 0) for k, v in after.items() if k[1] != "successful"}
    assert not any(failed.values()), f"probes failed while the pod was Ready: {failed}"


def test_metrics_are_served_on_the_host_network(operator: Node) -> None:
    pod = _active(operator)
    port = next(
        p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "metrics"
    )
    status, body = _http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "# TYPE lockyard_operator_reconciliations_total counter" in body


def test_killed_operator_container_is_restarted_by_the_kubelet(operator: Node) -> None:
    pod = _active(operator)
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    pid = container_pid(operator, NS, name)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    def restarted_and_ready() -> bool:
        current = get_pod(operator, NS, name)
        count = current["status"]["containerStatuses"][0]["restartCount"]
        return bool(count == restarts + 1 and is_ready(current))

    wait_for(restarted_and_ready, 120, f"{name} to be restarted and Ready again")
    print(f"operator container restarted and Ready {time.monotonic() - started:.1f}s after SIGKILL")
    assert container_pid(operator, NS, name) != pid


def test_second_replica_cannot_share_the_host_network_ports(operator: Node) -> None:
    """Both replicas declare ports 8080/8081 and every pod here shares the host's network: the
    scheduler keeps the second one Pending instead of letting it fail to bind. (A second node
    on 127.0.0.2 plus an operator that binds its pod IP would run both; see docs/node.md.)"""
    everything = pods(operator, NS, OPERATOR_SELECTOR)
    assert len(everything) == 2
    pending = [p for p in everything if p["status"]["phase"] == "Pending"]
    assert len(pending) == 1
    scheduled = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "False"
    assert "didn't have free ports for the requested pod ports" in scheduled["message"]


def test_store_reconciled_by_the_operator_pod(
    operator: Node, redis_store: str, namespace: str
) -> None:
    store = operator.kubectl(
        "get", "statestore", redis_store, "-n", namespace,
        "-o", "jsonpath={.status.conditions[?(@.type=='BackendReachable')].status}",
    )  # fmt: skip
    assert store.stdout == "True"
    binding = operator.kubectl("get", "secret", f"lockyard-store-{redis_store}", "-n", namespace)
    assert binding.returncode == 0
