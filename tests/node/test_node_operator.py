"""The operator as pods on a real kubelet, installed with ``kubectl apply -k crds/ && kubectl
apply -k deploy/`` (only the image swapped for the local build; the node's admission policies
add hostNetwork, imagePullPolicy Never and the API server's loopback address). Both replicas run,
one per node, each serving its endpoints on its node's address (``--bind-address=$(POD_IP)``);
the holder of the election Lease leads."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

from lockyard_dev.node import Node
from lockyard_dev.node.deploy import (
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    both_replicas_ready,
    container_pid,
    election_holder,
    get_pod,
    is_ready,
    leader_pod,
    pods,
    probe_counts,
    wait_for,
    wait_for_leader,
)

NS = OPERATOR_NAMESPACE


def _http_get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def test_operator_pod_runs_non_root_on_a_read_only_root(operator: Node) -> None:
    pod = wait_for_leader(operator, 60)
    name = pod["metadata"]["name"]
    assert pod["spec"]["hostNetwork"] is True  # set by the node's admission policy
    assert pod["spec"]["nodeName"] in operator.names
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator.kubectl("exec", "-n", NS, name, "--", "id", "-u").stdout.strip() == "65532"
    denied = operator.kubectl("exec", "-n", NS, name, "--", "touch", "/opt/x", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    # /tmp is the one writable place (an emptyDir).
    operator.kubectl("exec", "-n", NS, name, "--", "touch", "/tmp/x")


def test_kubelet_calls_the_probes(operator: Node) -> None:
    pod = wait_for_leader(operator, 60)
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


def test_each_replica_serves_metrics_and_health_on_its_node_address(operator: Node) -> None:
    wait_for(lambda: both_replicas_ready(operator), 120, "both operator replicas to be Ready")
    replicas = pods(operator, NS, OPERATOR_SELECTOR)
    # One per node; with hostNetwork the pod IP is the node's address.
    assert sorted((p["spec"]["nodeName"], p["status"]["podIP"]) for p in replicas) == [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
    ]
    ports = {p["name"]: p["containerPort"] for p in replicas[0]["spec"]["containers"][0]["ports"]}
    for pod in replicas:
        address = pod["status"]["podIP"]
        status, body = _http_get(f"http://{address}:{ports['metrics']}/metrics")
        assert status == 200
        assert "# TYPE lockyard_operator_reconciliations_total counter" in body
        status, health = _http_get(f"http://{address}:{ports['health']}/healthz")
        assert status == 200
        # Each address answers for its own replica (not one process on 0.0.0.0 for both).
        assert pod["metadata"]["name"] in health, health


def test_both_replicas_run_and_exactly_one_leads(operator: Node) -> None:
    wait_for(lambda: both_replicas_ready(operator), 120, "both operator replicas to be Ready")
    holder = election_holder(operator)
    assert holder is not None
    replicas = pods(operator, NS, OPERATOR_SELECTOR)
    port = next(
        p["containerPort"] for p in replicas[0]["spec"]["containers"][0]["ports"]
        if p["name"] == "health"
    )  # fmt: skip
    # Each replica's own health endpoint says who it is and whether it leads.
    said = {}
    for pod in replicas:
        status, body = _http_get(f"http://{pod['status']['podIP']}:{port}/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["identity"].startswith(pod["metadata"]["name"] + "_")
        said[health["identity"]] = health["leading"]
    assert sorted(said.values()) == [False, True], said
    assert said[holder] is True, f"the Lease names {holder}, the replicas say {said}"


def test_killed_operator_container_is_restarted_by_the_kubelet(operator: Node) -> None:
    pod = wait_for_leader(operator, 60)
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


def test_killing_the_leader_container_hands_over_to_the_standby(operator: Node) -> None:
    """SIGKILL releases nothing: the standby takes the Lease once it expires (lease duration
    plus a retry period), or the restarted container does, as a new candidate."""
    wait_for(lambda: both_replicas_ready(operator), 120, "both operator replicas to be Ready")
    old_holder = election_holder(operator)
    leader = wait_for_leader(operator, 60)
    started = time.monotonic()
    os.kill(container_pid(operator, NS, leader["metadata"]["name"]), signal.SIGKILL)
    wait_for(
        lambda: (
            election_holder(operator) not in (None, old_holder) and leader_pod(operator) is not None
        ),
        120,
        "another identity to hold the election Lease",
    )
    handed_over = time.monotonic() - started
    wait_for(lambda: both_replicas_ready(operator), 120, "both replicas Ready again")
    print(f"leader SIGKILLed: Lease taken over {handed_over:.1f}s later")
    # The Lease's duration bounds the hand-over from below: nobody took a live term early.
    lease = operator.kubectl(
        "get", "lease", "lockyard-operator", "-n", NS, "-o", "jsonpath={.spec.leaseDurationSeconds}"
    ).stdout
    assert handed_over >= float(lease) * 0.5, f"taken over after {handed_over:.1f}s"


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
