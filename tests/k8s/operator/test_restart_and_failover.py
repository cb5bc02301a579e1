"""Operator processes die: a SIGKILL mid-work loses and duplicates nothing after a restart, and
with leader election a standby takes over from a killed leader within lease + retry.

Host processes, not pods: a SIGKILL at a chosen point mid-work and a restart at once, with no
crash-loop back-off; the same with the operator's pods is in tests/node/test_node_operator*.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from operator_harness import (
    Operators,
    condition,
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
from lockyard.kube.errors import KubeApiError
from lockyard.kube.names import STORE_LABEL
from lockyard.kube.paths import leases_path
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

LEASE_S, RENEW_S, RETRY_S = 4, 3.0, 0.5


def election(namespace: str, identity: str) -> list[str]:
    """Leader election on the Lease <namespace>/lockyard-operator, with short timings."""
    return [
        "--leader-elect",
        f"--leader-elect-resource-namespace={namespace}",
        f"--leader-elect-identity={identity}",
        f"--leader-elect-lease-duration={LEASE_S}",
        f"--leader-elect-renew-deadline={RENEW_S}",
        f"--leader-elect-retry-period={RETRY_S}",
    ]


async def holder(kube: KubeApi, namespace: str) -> str:
    lease = await kube.get_or_none(leases_path(namespace, "lockyard-operator"))
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def redis_spec(server: RedisServer, policy: str = "Retain") -> dict[str, Any]:
    return {
        "redis": {
            "host": "127.0.0.1",
            "port": server.port,
            "passwordSecretRef": {"name": "auth", "key": "password"},
        },
        "deletionPolicy": policy,
    }


async def test_sigkill_mid_work_then_restart(
    kube: KubeApi, namespace: str, operators: Operators, redis_server: RedisServer
) -> None:
    password = redis_server.password or ""
    operators.secrets.add(password)
    await create_secret(kube, namespace, "auth", {"password": password})
    first = await operators.start()
    await create_store(kube, namespace, "victim", redis_spec(redis_server, "Delete"))
    store = await wait_condition(kube, namespace, "victim", "Ready", "True")
    url = (await read_secret(kube, namespace, store["status"]["binding"]["name"]))["url"]
    async with lockyard.connect(url) as ly:
        await ly.store.set("victim:t:state:1", "doomed")

    names = [f"s{i}" for i in range(6)]
    await asyncio.gather(
        *(create_store(kube, namespace, n, redis_spec(redis_server)) for n in names)
    )

    async def some_ready() -> bool:
        stores = (await kube.get(stores_path(namespace))).get("items", [])
        return any(condition(s, "Ready").get("status") == "True" for s in stores
                   if s["metadata"]["name"] in names)  # fmt: skip

    await eventually(some_ready, "the first new store to be ready", every=0.02)
    first.kill()  # mid-work: the other stores are in every stage of their reconciliation

    # While no operator runs: one store is deleted (it waits on the finalizer), one created.
    await kube.delete(stores_path(namespace, "victim"))
    await create_store(kube, namespace, "late", redis_spec(redis_server))

    await operators.start()
    for name in [*names, "late"]:
        await wait_condition(kube, namespace, name, "Ready", "True", timeout=60)
    await wait_gone(kube, stores_path(namespace, "victim"), timeout=60)
    async with lockyard.connect(url) as ly:
        assert await ly.store.get("victim:t:state:1") is None, "Delete policy purged after restart"

    # The garbage collector removes what the deleted store owned.
    await wait_gone(kube, object_path("", "v1", "secrets", namespace, "lockyard-store-victim"), 60)

    # Exactly one of everything: bindings, Roles, finalizers, conditions, purge events.
    selector = {"labelSelector": STORE_LABEL}
    bindings = await kube.get(object_path("", "v1", "secrets", namespace), params=selector)
    roles = await kube.get(
        object_path("rbac.authorization.k8s.io", "v1", "roles", namespace), params=selector
    )
    expected = sorted(f"lockyard-store-{n}" for n in [*names, "late"])
    assert sorted(s["metadata"]["name"] for s in bindings["items"]) == expected
    assert sorted(r["metadata"]["name"] for r in roles["items"]) == expected
    for item in (await kube.get(stores_path(namespace)))["items"]:
        meta = item["metadata"]
        assert meta["finalizers"] == ["lockyard.dev/finalizer"], meta["name"]
        assert not [a for a in meta.get("annotations", {}) if "kopf.zalando.org" in a]
        types = [c["type"] for c in item["status"]["conditions"]]
        assert len(types) == len(set(types)), types
    purges = [e for e in await events_for(kube, namespace, "victim") if e["reason"] == "DataPurged"]
    assert len(purges) == 1
    assert purges[0].get("count", 1) == 1


async def test_standby_takes_over_when_the_leader_dies(
    kube: KubeApi, namespace: str, operators: Operators
) -> None:
    leader = await operators.start(*election(namespace, "first"))

    async def led_by_first() -> bool:
        return await holder(kube, namespace) == "first"

    await eventually(led_by_first, "the first replica to lead")
    await create_store(kube, namespace, "before", {"memory": {}})
    await wait_condition(kube, namespace, "before", "Ready", "True")
    standby = await operators.start(*election(namespace, "second"))
    await create_store(kube, namespace, "while-led", {"memory": {}})
    await wait_condition(kube, namespace, "while-led", "Ready", "True")
    assert f"{namespace}/while-led:" in leader.log()
    assert f"{namespace}/while-led:" not in standby.log(), "only the leader reconciles"
    assert "became the leader" not in standby.log()

    leader.kill()  # SIGKILL: no release; the standby waits the Lease out
    killed = time.monotonic()
    await create_store(kube, namespace, "after", {"memory": {}})
    await wait_condition(kube, namespace, "after", "Ready", "True", timeout=LEASE_S + 30)
    takeover = time.monotonic() - killed
    print(f"standby took over and reconciled a new store {takeover:.2f}s after SIGKILL")
    assert takeover < LEASE_S + RETRY_S + 10
    assert f"{namespace}/after:" in standby.log()
    assert await holder(kube, namespace) == "second"


async def test_all_namespaces_with_leader_election(
    kube: KubeApi, namespace: str, operators: Operators
) -> None:
    """The Deployment's mode: every namespace, one leader."""

    async def no_other_stores() -> bool:
        # Earlier tests' namespaces are still being deleted: let them go first, so this
        # operator sees only its own test's objects. A worker runs one test at a time on its
        # own control plane, so every other namespace belongs to a test that has ended and
        # whose operator is gone: their StateStores are deleted here, finalizers and all,
        # rather than left to the namespace controller's backoff (over 120 s on a loaded
        # machine with a few hundred namespaces terminating).
        everywhere = await kube.get(object_path("lockyard.dev", "v1alpha1", "statestores"))
        others = [i for i in everywhere["items"] if i["metadata"]["namespace"] != namespace]
        for item in others:
            meta = item["metadata"]
            path = object_path(
                "lockyard.dev", "v1alpha1", "statestores", meta["namespace"], meta["name"]
            )
            try:
                if meta.get("finalizers"):
                    await kube.merge_patch(path, {"metadata": {"finalizers": None}})
                if "deletionTimestamp" not in meta:
                    await kube.delete(path)
            except KubeApiError as exc:
                if not exc.not_found:
                    raise
        return not others

    await eventually(no_other_stores, "other tests' StateStores to be gone", timeout=120)
    await operators.start(*election(namespace, "cluster-wide"), scope=["--all-namespaces"])
    await create_store(kube, namespace, "anywhere", {"memory": {}})
    await wait_condition(kube, namespace, "anywhere", "Ready", "True")
    assert await holder(kube, namespace) == "cluster-wide"
