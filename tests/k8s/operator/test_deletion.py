"""Deleting a StateStore: its mirrored Leases go, its data goes only with deletionPolicy Delete
(and only its own prefix), its binding Secret and Role go by garbage collection.

Host process, not a pod: it needs only the control plane (no root, no kubelet); deletion with
both policies by the operator as a pod is in tests/node/test_node_operator_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    Operators,
    backend_spec,
    create_secret,
    create_store,
    events_for,
    eventually,
    read_secret,
    stores_path,
    wait_condition,
    wait_gone,
)

import lockyard
from lockyard.kube.api import KubeApi, object_path
from lockyard.kube.names import STORE_LABEL, store_label_value

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


def lease(name: str, store: str | None) -> dict[str, Any]:
    labels = {STORE_LABEL: store_label_value(store)} if store else {}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "labels": labels},
        "spec": {"holderIdentity": "someone"},
    }


@pytest.fixture(params=["redis", "postgresql", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """A backend kind and its (session) test server."""
    fixture = {"redis": "redis_server", "postgresql": "postgres_server", "dynamodb": "moto_server"}
    return request.param, request.getfixturevalue(fixture[request.param])


async def test_delete_and_retain(
    kube: KubeApi, namespace: str, operators: Operators, backend: tuple[str, Any]
) -> None:
    kind, server = backend
    spec, secret = backend_spec(kind, server)
    operators.secrets |= set(secret.values())
    await operators.start()
    await create_secret(kube, namespace, "auth", secret)
    urls = {}
    for name, policy in (("doomed", "Delete"), ("kept", "Retain")):
        await create_store(kube, namespace, name, {**spec, "deletionPolicy": policy})
        store = await wait_condition(kube, namespace, name, "Ready", "True")
        binding = await read_secret(kube, namespace, store["status"]["binding"]["name"])
        urls[name] = binding["url"]
        async with lockyard.connect(binding["url"]) as ly:
            await ly.store.set(f"{name}:t:state:1", "value")
            await ly.store.index_timeout(f"{name}:t:state:1", 123)
            guard = await ly.locks.try_acquire("held-lock", ttl=600)
            assert guard is not None

    leases = object_path("coordination.k8s.io", "v1", "leases", namespace)
    for lease_name, store_name in (("l-doomed", "doomed"), ("l-kept", "kept"), ("l-other", None)):
        await kube.create(leases, lease(lease_name, store_name))

    # Delete: Leases and data of this store go, nothing else.
    await kube.delete(stores_path(namespace, "doomed"))
    await wait_gone(kube, stores_path(namespace, "doomed"))
    async with lockyard.connect(urls["doomed"]) as ly:
        assert await ly.store.get("doomed:t:state:1") is None
        assert await ly.store.get_expired_timeouts(10_000) == []
        assert await ly.locks.list_held() == []
    async with lockyard.connect(urls["kept"]) as ly:
        assert await ly.store.get("kept:t:state:1") == "value"
    assert await kube.get_or_none(f"{leases}/l-doomed") is None
    assert await kube.get_or_none(f"{leases}/l-kept") is not None
    assert await kube.get_or_none(f"{leases}/l-other") is not None
    binding = "lockyard-store-doomed"
    await wait_gone(kube, object_path("", "v1", "secrets", namespace, binding), timeout=60)
    await wait_gone(
        kube,
        object_path("rbac.authorization.k8s.io", "v1", "roles", namespace, binding),
        timeout=60,
    )

    # Retain: Leases go, data stays.
    await kube.delete(stores_path(namespace, "kept"))
    await wait_gone(kube, stores_path(namespace, "kept"))
    assert await kube.get_or_none(f"{leases}/l-kept") is None
    async with lockyard.connect(urls["kept"]) as ly:
        assert await ly.store.get("kept:t:state:1") == "value"
        assert [lock.name for lock in await ly.locks.list_held()] == ["held-lock"]
        await ly.store.purge()  # tidy the shared server

    async def reported() -> bool:
        doomed = {e["reason"] for e in await events_for(kube, namespace, "doomed")}
        kept = {e["reason"] for e in await events_for(kube, namespace, "kept")}
        return "DataPurged" in doomed and "DataRetained" in kept

    await eventually(reported, "DataPurged and DataRetained events", timeout=15)
