"""The operator's end-to-end behaviours with the operator as a pod on the node: Secret rotation
(seen by a workload pod's mounted binding), deletion with both policies, failover when the
active operator pod is deleted, and work done across a SIGKILL of the operator container.

The operator runs as its Deployment's two replicas, one per node; the one that holds the
election Lease does the work.

The host-process e2e tests (tests/k8s/operator) stay for what needs finer control than a pod
gives: exact election timings set per process, API-server outages, fault injection between the
operator and its backends."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

import lockyard
from lockyard_dev.node import Node
from lockyard_dev.node.deploy import (
    ELECTION_LEASE,
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    both_replicas_ready,
    container_pid,
    election_holder,
    get_pod,
    is_ready,
    leader_pod,
    pods,
    wait_for,
    wait_for_leader,
    workload_pod_manifest,
)
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.redis import RedisServer

SOURCE = repository_root()
OLD, NEW = "first-password-1f2e", "second-password-9a8b"


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    with RedisServer(password=OLD) as server:
        yield server


def _store(node: Node, namespace: str, name: str, spec: str) -> dict[str, Any]:
    node.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=f"apiVersion: lockyard.dev/v1alpha1\nkind: StateStore\nmetadata: {{name: {name}}}\n"
        f"spec:\n{spec}",
    )  # fmt: skip
    return _wait_ready(node, namespace, name)


def _wait_ready(node: Node, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    def ready() -> bool:
        got = node.kubectl("get", "statestore", name, "-n", namespace, "-o", "json", check=False)
        if got.returncode != 0:
            return False
        conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(ready, timeout, f"StateStore {namespace}/{name} to be Ready")
    store: dict[str, Any] = json.loads(
        node.kubectl("get", "statestore", name, "-n", namespace, "-o", "json").stdout
    )
    return store


def _binding_url(node: Node, namespace: str, store: str) -> str:
    return node.kubectl(
        "get", "secret", f"lockyard-store-{store}", "-n", namespace,
        "-o", "go-template={{.data.url | base64decode}}",
    ).stdout  # fmt: skip


def test_rotated_secret_reaches_the_mounted_binding_of_a_running_pod(
    operator: Node, namespace: str, redis_with_password: RedisServer
) -> None:
    redis = redis_with_password
    operator.kubectl(
        "create", "secret", "generic", "auth", "-n", namespace, f"--from-literal=password={OLD}"
    )
    spec = (
        f"  redis: {{host: 127.0.0.1, port: {redis.port}, "
        "passwordSecretRef: {name: auth, key: password}}\n"
        "  locks: {leaseMirroring: true}\n"
    )
    _store(operator, namespace, "orders", spec)
    manifest = workload_pod_manifest(SOURCE, name="rotating", hold=("invoice-9",))
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_for(lambda: is_ready(get_pod(operator, namespace, "rotating")), 60, "the workload pod")
    wait_for(
        lambda: "holding invoice-9" in operator.kubectl("logs", "-n", namespace, "rotating").stdout,
        60,
        "the workload to hold its lock",
    )

    def mounted_url() -> str:
        read = operator.kubectl(
            "exec", "-n", namespace, "rotating", "--", "cat", "/bindings/orders/url", check=False
        )
        assert read.returncode == 0, f"kubectl exec: {read.stderr}"
        return read.stdout

    assert OLD in mounted_url()
    with redis.admin() as admin:
        admin.config_set("requirepass", NEW)
    started = time.monotonic()
    operator.kubectl(
        "patch", "secret", "auth", "-n", namespace, "--type=merge",
        "-p", json.dumps({"stringData": {"password": NEW}}),
    )  # fmt: skip
    wait_for(lambda: NEW in _binding_url(operator, namespace, "orders"), 30, "the new binding")
    binding_after = time.monotonic() - started
    # The kubelet refreshes secret volumes on its sync loop (syncFrequency 10 s here).
    wait_for(lambda: NEW in mounted_url(), 120, "the pod's mounted binding to change")
    mounted_after = time.monotonic() - started
    assert OLD not in mounted_url()
    print(f"rotation: binding Secret {binding_after:.1f}s, pod's mounted file {mounted_after:.1f}s")


async def test_deletion_policies_with_the_operator_as_a_pod(
    operator: Node, namespace: str, redis_host: RedisServer
) -> None:
    urls = {}
    for name, policy in (("doomed", "Delete"), ("kept", "Retain")):
        spec = (
            f"  redis: {{host: 127.0.0.1, port: {redis_host.port}}}\n"
            f"  prefix: {name}{secrets.token_hex(3)}\n"
            f"  deletionPolicy: {policy}\n"
        )
        _store(operator, namespace, name, spec)
        urls[name] = _binding_url(operator, namespace, name)
        async with lockyard.connect(urls[name]) as ly:
            await ly.store.set(f"{name}:t:state:1", "value")
    for name in ("doomed", "kept"):
        operator.kubectl(
            "delete", "statestore", name, "-n", namespace, "--wait=true", "--timeout=60s"
        )
    async with lockyard.connect(urls["doomed"]) as ly:
        assert await ly.store.get("doomed:t:state:1") is None
    async with lockyard.connect(urls["kept"]) as ly:
        assert await ly.store.get("kept:t:state:1") == "value"
        await ly.store.purge()
    # Both bindings are garbage-collected with their stores, whatever the policy.
    wait_for(
        lambda: "lockyard-store-" not in operator.kubectl("get", "secrets", "-n", namespace).stdout,
        60,
        "the bindings to be collected",
    )


def _election_lease(node: Node) -> dict[str, Any]:
    lease: dict[str, Any] = json.loads(
        node.kubectl("get", "lease", ELECTION_LEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    )
    return lease


def _stamp(micro_time: str) -> float:
    """A Lease's MicroTime (``2026-01-02T03:04:05.123456Z``) as POSIX seconds."""
    return datetime.fromisoformat(micro_time.replace("Z", "+00:00")).timestamp()


def test_deleting_the_active_operator_pod_fails_over(
    operator: Node, namespace: str, redis_host: RedisServer
) -> None:
    """A deleted pod gets SIGTERM: the leader stops kopf and releases the Lease, so the standby
    (already Running and Ready on the other node) takes over at once, not after the Lease's
    15 s."""
    wait_for(lambda: both_replicas_ready(operator), 120, "both operator replicas to be Ready")
    active = wait_for_leader(operator, 120)
    old = active["metadata"]["name"]
    old_holder = election_holder(operator)
    before = _election_lease(operator)["spec"]
    started = time.monotonic()
    operator.kubectl("delete", "pod", old, "-n", OPERATOR_NAMESPACE, "--wait=false")

    def another_leads() -> bool:
        pod = leader_pod(operator)
        return pod is not None and pod["metadata"]["name"] != old

    wait_for(another_leads, 120, "the other operator pod to lead")
    took_over = time.monotonic() - started
    assert election_holder(operator) != old_holder
    # The new active one reconciles: a store created now becomes Ready.
    spec = f"  redis: {{host: 127.0.0.1, port: {redis_host.port}}}\n"
    _store(operator, namespace, "after-failover", spec)
    reconciled = time.monotonic() - started
    print(
        f"operator failover: new leader {took_over:.1f}s, store Ready {reconciled:.1f}s "
        "after the delete"
    )
    # Released, not expired: an expired term is taken over no sooner than its duration after
    # its last renewal (which is no earlier than the one read before the delete).
    after = _election_lease(operator)["spec"]
    gap = _stamp(after["acquireTime"]) - _stamp(before["renewTime"])
    assert gap < before["leaseDurationSeconds"], f"new term {gap:.1f}s after the last renewal"
    assert after["leaseTransitions"] > before["leaseTransitions"]
    # The Deployment replaces the deleted pod on the node it freed: two Ready replicas again.
    wait_for(
        lambda: both_replicas_ready(operator)
        and old not in [p["metadata"]["name"] for p in pods(operator, OPERATOR_NAMESPACE,
                                                           OPERATOR_SELECTOR)],
        120,
        "the deleted operator pod to be replaced",
    )  # fmt: skip


def test_work_queued_while_the_operator_container_is_killed_is_done(
    operator: Node, namespace: str, redis_host: RedisServer
) -> None:
    name = wait_for_leader(operator, 120)["metadata"]["name"]
    started = time.monotonic()
    os.kill(container_pid(operator, OPERATOR_NAMESPACE, name), signal.SIGKILL)
    spec = f"  redis: {{host: 127.0.0.1, port: {redis_host.port}}}\n"
    operator.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=f"apiVersion: lockyard.dev/v1alpha1\nkind: StateStore\n"
        f"metadata: {{name: during-kill}}\nspec:\n{spec}",
    )  # fmt: skip
    _wait_ready(operator, namespace, "during-kill")
    print(f"store created during the kill Ready {time.monotonic() - started:.1f}s after SIGKILL")
    restarts = get_pod(operator, OPERATOR_NAMESPACE, name)["status"]["containerStatuses"][0]
    assert restarts["restartCount"] >= 1
