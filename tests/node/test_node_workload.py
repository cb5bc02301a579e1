"""A sample workload (deploy/samples/workload) as a pod: ``lockyard.connect_store`` with the
binding mounted under ``$SERVICE_BINDING_ROOT`` or read through the API, locks mirrored into
Leases owned by the pod, garbage collection when the pod goes, reaping when it is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from lockyard_dev.node import Node
from lockyard_dev.node.deploy import (
    container_pid,
    get_pod,
    is_ready,
    wait_for,
    workload_pod_manifest,
)
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.redis import RedisServer

SOURCE = repository_root()
LEASES = "app.kubernetes.io/managed-by=lockyard"


def _leases(node: Node, namespace: str) -> list[dict[str, Any]]:
    listed = node.kubectl("get", "leases", "-n", namespace, "-l", LEASES, "-o", "json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def _start(node: Node, namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
    manifest = workload_pod_manifest(SOURCE, name=name, **kwargs)
    node.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_for(lambda: is_ready(get_pod(node, namespace, name)), 60, f"pod {name} Ready")
    wait_for(
        lambda: "holding invoice-2" in node.kubectl("logs", "-n", namespace, name).stdout,
        60,
        f"{name} to hold its locks",
    )
    return get_pod(node, namespace, name)


def _owned_leases(node: Node, namespace: str, pod: dict[str, Any], count: int) -> None:
    uid = pod["metadata"]["uid"]

    def owned() -> bool:
        leases = _leases(node, namespace)
        return len(leases) == count and all(
            [(o["kind"], o["uid"]) for o in lease["metadata"].get("ownerReferences", [])]
            == [("Pod", uid)]
            for lease in leases
        )

    wait_for(owned, 30, f"{count} Leases owned by pod {pod['metadata']['name']}")


def test_workload_with_mounted_binding_holds_locks_as_owned_leases(
    operator: Node, redis_store: str, namespace: str
) -> None:
    pod = _start(operator, namespace, "mounted")
    log = operator.kubectl("logs", "-n", namespace, "mounted").stdout
    assert "SERVICE_BINDING_ROOT=/bindings" in log
    assert "store reachable" in log
    files = operator.kubectl("exec", "-n", namespace, "mounted", "--", "ls", "/bindings/orders")
    assert {"url", "type", "lease-mirroring"} <= set(files.stdout.split())
    _owned_leases(operator, namespace, pod, 2)
    shown = subprocess.run(
        [sys.executable, "-m", "lockyard.cli.main", "locks", "-A", "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(operator.kubeconfig)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    mine = [i for i in json.loads(shown.stdout)["items"] if i["namespace"] == namespace]
    assert sorted(i["lock"] for i in mine) == ["invoice-1", "invoice-2"]
    assert {i["holderPod"] for i in mine} == {f"{namespace}/mounted"}


def test_workload_reads_its_binding_through_the_api(
    operator: Node, redis_store: str, namespace: str
) -> None:
    pod = _start(operator, namespace, "api-reader", mount_binding=False)
    log = operator.kubectl("logs", "-n", namespace, "api-reader").stdout
    assert "SERVICE_BINDING_ROOT=(unset)" in log
    _owned_leases(operator, namespace, pod, 2)


def test_deleting_the_pod_garbage_collects_its_leases(
    operator: Node, redis_store: str, namespace: str, redis_host: RedisServer
) -> None:
    pod = _start(operator, namespace, "doomed", ttl=60)
    _owned_leases(operator, namespace, pod, 2)
    started = time.monotonic()
    # Forced: the API object goes at once and the kubelet SIGKILLs the container, so nothing
    # releases the locks; only the garbage collector (ownerReference) can remove the Leases.
    operator.kubectl(
        "delete", "pod", "doomed", "-n", namespace, "--grace-period=0", "--force", "--wait=false"
    )
    wait_for(lambda: not _leases(operator, namespace), 60, "the Leases to be collected")
    gone_after = time.monotonic() - started
    print(f"Leases garbage-collected {gone_after:.1f}s after the pod was deleted")
    # The locks themselves were never released: they run out with their 60 s TTL.
    with redis_host.admin() as admin:
        held = [key for key in admin.keys("*") if "invoice-1" in key]
    assert held, "the lock should still be held in Redis (its TTL has not run out)"


def _lease_left_s(redis: RedisServer) -> float:
    """The shortest lease left (seconds) among the workload's held locks, as Redis counts it."""
    with redis.admin() as admin:
        left_ms = [int(admin.pttl(key)) for key in admin.keys("*") if "invoice-" in key]
    live = [ms for ms in left_ms if ms > 0]  # the fencing counters never expire (-1)
    assert live, f"no held invoice lock in Redis: {left_ms}"
    return min(live) / 1000


def test_sigkilled_workload_has_its_leases_reaped(
    operator: Node, redis_store: str, namespace: str, redis_host: RedisServer
) -> None:
    ttl = 6.0
    pod = _start(operator, namespace, "killed", restart="Never", ttl=ttl)
    _owned_leases(operator, namespace, pod, 2)
    started = time.monotonic()
    os.kill(container_pid(operator, namespace, "killed"), signal.SIGKILL)
    # Read after the kill: nothing renews them any more. The workload renews every third of
    # the TTL, so a lock may have as little as two thirds of it left (a CI run beside two CPU
    # hogs reaped after 4.7 s of a 6 s TTL, rightly): that, not the TTL, is the bound.
    left_s = _lease_left_s(redis_host)
    wait_for(
        lambda: get_pod(operator, namespace, "killed")["status"]["phase"] == "Failed",
        60,
        "the killed pod to be Failed",
    )
    # The pod object stays (restartPolicy Never), so no garbage collection: the operator's
    # reaper removes each Lease once the backend no longer holds its lock.
    wait_for(lambda: not _leases(operator, namespace), 120, "the reaper to remove the Leases")
    reaped_after = time.monotonic() - started
    print(
        f"Leases reaped {reaped_after:.1f}s after SIGKILL "
        f"(lock TTL {ttl:.0f}s, {left_s:.2f}s left at the kill)"
    )
    assert 0 < left_s <= ttl
    assert reaped_after >= left_s, "reaped before the locks could have expired"
