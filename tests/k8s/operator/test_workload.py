"""A workload opens its store with ``lockyard.connect_store(name)`` under nothing but the Role the
operator made for that store (bound to its ServiceAccount by one RoleBinding).

A host process with the workload's token, not a pod: it needs only the control plane; the
workload as a pod (binding mounted, Leases owned by the pod) is in tests/node/test_node_workload.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from operator_harness import (
    REPO,
    Operators,
    create_secret,
    create_store,
    read_secret,
    wait_condition,
)

import lockyard
from lockyard.kube.api import KubeApi, object_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.cluster.identities import service_account_token, token_kubeconfig
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

WORKLOAD = textwrap.dedent(
    """
    import asyncio, json, sys
    import lockyard
    from lockyard.kube.api import KubeApi, KubeApiError, object_path
    from lockyard.mirror.lease_names import LOCK_ANNOTATION, store_selector

    async def main(store: str, namespace: str) -> None:
        out = {}
        # No namespace given: connect_store takes the kubeconfig context's.
        async with await lockyard.connect_store(store) as ly:
            out["backend"], out["prefix"] = ly.backend, ly.prefix
            await ly.store.set("app:t:state:1", "from-workload")
            guard = await ly.locks.try_acquire("nightly-job", ttl=30)
            out["fencing_token"] = guard.fencing_token
            # leaseMirroring is on: the held lock shows up as a Lease.
            async with await KubeApi.connect() as api:
                leases = object_path("coordination.k8s.io", "v1", "leases", namespace)
                for _ in range(100):
                    found = await api.get(leases, params={"labelSelector": store_selector(store)})
                    if found["items"]:
                        break
                    await asyncio.sleep(0.1)
                out["mirrored"] = [i["metadata"]["annotations"][LOCK_ANNOTATION]
                                   for i in found["items"]]
            await guard.release()
        async with await KubeApi.connect() as api:
            for what, path in {
                "other_secret": object_path("", "v1", "secrets", namespace, "auth"),
                "list_secrets": object_path("", "v1", "secrets", namespace),
            }.items():
                try:
                    await api.get(path)
                    out[what] = 200
                except KubeApiError as exc:
                    out[what] = exc.status
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": "workload-lease"}}
            await api.create(object_path("coordination.k8s.io", "v1", "leases", namespace), lease)
            out["lease"] = "created"
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_connect_store_under_the_per_store_role(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    redis_server: RedisServer,
    installed: ControlPlane,
    tmp_path: Path,
) -> None:
    password = redis_server.password or ""
    operators.secrets.add(password)
    await operators.start()
    await create_secret(kube, namespace, "auth", {"password": password})
    spec = {
        "redis": {
            "host": "127.0.0.1",
            "port": redis_server.port,
            "passwordSecretRef": {"name": "auth", "key": "password"},
        },
        "deletionPolicy": "Delete",
        "locks": {"leaseMirroring": True},
    }
    await create_store(kube, namespace, "orders", spec)
    store = await wait_condition(kube, namespace, "orders", "Ready", "True")
    role = store["status"]["binding"]["name"]

    await kube.create(
        object_path("", "v1", "serviceaccounts", namespace),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}},
    )
    await kube.create(
        object_path("rbac.authorization.k8s.io", "v1", "rolebindings", namespace),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "app-uses-orders"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
        },
    )
    token = await asyncio.to_thread(service_account_token, installed, namespace, "app")
    kubeconfig = token_kubeconfig(tmp_path / "app.kubeconfig", installed, "app", token, namespace)
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", WORKLOAD, "orders", namespace],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["backend"] == "redis"
    assert out["prefix"] == f"{namespace}.orders"
    assert out["fencing_token"] >= 1
    assert out["other_secret"] == 403, "the Role grants exactly one Secret: the binding"
    assert out["list_secrets"] == 403
    assert out["lease"] == "created"
    assert out["mirrored"] == ["nightly-job"], "connect_store turned lease mirroring on"

    # The workload wrote to the very store the operator looks after.
    binding = await read_secret(kube, namespace, role)
    async with lockyard.connect(binding["url"]) as ly:
        assert await ly.store.get("app:t:state:1") == "from-workload"
