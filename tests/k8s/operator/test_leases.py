"""With ``leaseMirroring``, the operator's reaper deletes mirrored Leases whose lock is gone (a
holder that died cannot), and leaves those of held locks alone.

Host process, not a pod: the reaper needs only the control plane; workload pods whose Leases
are reaped are in tests/node/test_node_workload.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from operator_harness import (
    Operators,
    backend_spec,
    create_secret,
    create_store,
    read_secret,
    wait_condition,
    wait_gone,
)

import lockyard
from lockyard.kube.api import KubeApi, object_path
from lockyard.mirror import lease_names
from lockyard_dev.servers.redis import RedisServer
from lockyard_operator.reaper import REAP_INTERVAL_S

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


def mirrored_lease(store: str, lock: str, fencing_token: int) -> dict[str, Any]:
    """A Lease as a workload's mirror writes it (names and marks from ``lockyard.mirror``)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_names.lease_name(store, lock),
            "labels": {
                lease_names.MANAGED_BY_LABEL: lease_names.MANAGED_BY_VALUE,
                lease_names.STORE_LABEL: lease_names.store_label(store),
            },
            "annotations": {
                lease_names.STORE_ANNOTATION: store,
                lease_names.LOCK_ANNOTATION: lock,
                lease_names.FENCING_ANNOTATION: str(fencing_token),
            },
        },
        "spec": {"holderIdentity": "a-pod-that-died", "leaseDurationSeconds": 30},
    }


async def test_reaper_removes_leases_of_locks_nobody_holds(
    kube: KubeApi, namespace: str, operators: Operators, redis_server: RedisServer
) -> None:
    spec, secret = backend_spec("redis", redis_server)
    operators.secrets |= set(secret.values())
    await operators.start()
    await create_secret(kube, namespace, "auth", secret)
    await create_store(kube, namespace, "mirrored", {**spec, "locks": {"leaseMirroring": True}})
    store = await wait_condition(kube, namespace, "mirrored", "Ready", "True")
    url = (await read_secret(kube, namespace, store["status"]["binding"]["name"]))["url"]
    leases = object_path("coordination.k8s.io", "v1", "leases", namespace)
    async with lockyard.connect(url) as ly:
        guard = await ly.locks.try_acquire("still-held", ttl=600)
        assert guard is not None
        live = await kube.create(
            leases, mirrored_lease("mirrored", "still-held", guard.fencing_token)
        )
        dead = await kube.create(leases, mirrored_lease("mirrored", "long-gone", 7))
        created = time.monotonic()
        await wait_gone(kube, f"{leases}/{dead['metadata']['name']}", timeout=REAP_INTERVAL_S + 15)
        print(f"stale Lease reaped after {time.monotonic() - created:.2f}s")
        assert await kube.get_or_none(f"{leases}/{live['metadata']['name']}") is not None
        await guard.release()
    await wait_gone(kube, f"{leases}/{live['metadata']['name']}", timeout=REAP_INTERVAL_S + 15)
