"""Every sample in deploy/samples reaches Ready=True against a real backend, under the operator's
own ServiceAccount; the binding Secret, the workload Role and the metrics come with it.

Host process, not a pod: every backend's sample needs only the control plane and its server;
the operator pod's Ready store is in tests/node/test_node_operator.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import (
    REPO,
    Operators,
    condition,
    create_store,
    read_secret,
    secrets_path,
    stores_path,
    wait_condition,
)

from lockyard.config import parse_url
from lockyard.kube.api import KubeApi, object_path
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import MASTER_NAME, RedisSentinelSetup, RedisServer
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

SAMPLES = REPO / "deploy" / "samples"
#: The goal is 5 s; the bound leaves room for a loaded two-core machine.
READY_WITHIN_S = 15.0


def load(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Secrets and the StateStore of one sample file."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    secrets = [d for d in documents if d["kind"] == "Secret"]
    (store,) = [d for d in documents if d["kind"] == "StateStore"]
    return secrets, store


def point_at_test_servers(
    spec: dict[str, Any],
    secrets: list[dict[str, Any]],
    redis: RedisServer,
    sentinel: RedisSentinelSetup,
    cluster: RedisClusterSetup,
    postgres: PostgresServer,
    moto: MotoServer,
) -> None:
    """Rewrite a sample's addresses and secret values to the servers of this test run."""
    values = {key: value for s in secrets for key, value in s["stringData"].items()}
    if "redis" in spec:
        spec["redis"] |= {"host": "127.0.0.1", "port": redis.port}
        values["password"] = redis.password or ""
    elif "redisSentinel" in spec:
        spec["redisSentinel"]["sentinels"] = [
            {"host": "127.0.0.1", "port": s.port} for s in sentinel.sentinels
        ]
        spec["redisSentinel"]["master"] = MASTER_NAME
        values["password"] = sentinel.password or ""
    elif "redisCluster" in spec:
        spec["redisCluster"]["nodes"] = [
            {"host": "127.0.0.1", "port": s.port} for s in cluster.servers[:3]
        ]
        values["password"] = cluster.password or ""
    elif "postgresql" in spec:
        spec["postgresql"] |= {
            "host": "127.0.0.1",
            "port": postgres.port,
            "database": postgres.database,
            "user": postgres.user,
        }
        values["password"] = postgres.password
    elif "dynamodb" in spec:
        spec["dynamodb"]["endpointUrl"] = moto.endpoint_url
    for secret in secrets:
        secret["stringData"] = {k: values[k] for k in secret["stringData"]}


async def test_every_sample_becomes_ready(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    redis_server: RedisServer,
    sentinel_setup: RedisSentinelSetup,
    redis_cluster_setup: RedisClusterSetup,
    postgres_server: PostgresServer,
    moto_server: MotoServer,
) -> None:
    samples = sorted(SAMPLES.glob("*.yaml"))
    samples = [p for p in samples if p.name != "kustomization.yaml"]
    assert len(samples) == 6, "one sample per backend"
    operator = await operators.start()
    stores: dict[str, dict[str, Any]] = {}
    for path in samples:
        secrets, store = load(path)
        spec = store["spec"]
        point_at_test_servers(
            spec,
            secrets,
            redis_server,
            sentinel_setup,
            redis_cluster_setup,
            postgres_server,
            moto_server,
        )
        for secret in secrets:
            operators.secrets |= set(secret["stringData"].values())
            await kube.create(secrets_path(namespace), secret)
        stores[store["metadata"]["name"]] = spec

    async def ready_after(name: str, spec: dict[str, Any]) -> float:
        started = time.monotonic()
        await create_store(kube, namespace, name, spec)
        await wait_condition(kube, namespace, name, "Ready", "True", timeout=60)
        return time.monotonic() - started

    timings = dict(
        zip(
            stores,
            await asyncio.gather(*(ready_after(n, s) for n, s in stores.items())),
            strict=True,
        )
    )
    print("time to Ready:", {name: f"{seconds:.2f}s" for name, seconds in timings.items()})
    assert max(timings.values()) < READY_WITHIN_S, timings

    for name, spec in stores.items():
        store = await kube.get(stores_path(namespace, name))
        status = store["status"]
        members = ("memory", "redis", "redisSentinel", "redisCluster", "postgresql", "dynamodb")
        member = next(iter(k for k in members if k in spec))
        assert status["observedGeneration"] == store["metadata"]["generation"]
        for kind in ("Ready", "SecretsResolved", "BackendReachable", "BindingPublished"):
            assert condition(store, kind)["status"] == "True", (name, kind)
        assert status["backend"]["version"]
        assert status["backend"]["latencyMs"] >= 0
        assert status["guarantees"]["mutualExclusion"]
        assert status["locks"]["held"] == 0
        assert status["prefix"] == f"{namespace}.{name}"
        assert "lockyard.dev/finalizer" in store["metadata"]["finalizers"]

        binding = await read_secret(kube, namespace, status["binding"]["name"])
        assert binding["type"] == "lockyard"
        assert binding["prefix"] == status["prefix"]
        config = parse_url(binding["url"])
        assert config.backend == binding["provider"] == status["backend"]["name"]
        if member != "memory":
            assert any(value in binding["url"] for value in operators.secrets), (
                "the binding carries the credentials workloads need"
            )

        role = await kube.get(
            object_path(
                "rbac.authorization.k8s.io", "v1", "roles", namespace, status["binding"]["name"]
            )
        )
        assert role["metadata"]["ownerReferences"][0]["uid"] == store["metadata"]["uid"]
        secret_rule, lease_rule, store_rule = role["rules"]
        assert secret_rule["resourceNames"] == [status["binding"]["name"]]
        assert secret_rule["verbs"] == ["get"]
        assert set(lease_rule["verbs"]) == {
            "create", "get", "update", "patch", "delete", "list", "watch"
        }  # fmt: skip
        assert store_rule["resourceNames"] == [name]

        for value in operators.secrets:
            assert value not in str(status), "a secret value reached the status"

    metrics = await asyncio.to_thread(operator.metrics)
    assert 'lockyard_operator_reconciliations_total{result="Reconciled"}' in metrics
    for name in stores:
        assert f'lockyard_operator_backend_up{{namespace="{namespace}",name="{name}"}} 1' in metrics
