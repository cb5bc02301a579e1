"""The API server itself rejects bad StateStores, with messages that name the field.

No operator runs here: this is the CRD's schema (generated from the models) at work.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import stores_path

from lockyard.config.resource import API_GROUP, API_VERSION, EXACTLY_ONE_MESSAGE
from lockyard.kube.api import KubeApi, KubeApiError
from lockyard_dev.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.k8s

REF = {"name": "auth", "key": "password"}


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "StateStore",
        "metadata": {"name": "bad"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, [EXACTLY_ONE_MESSAGE]),
        ({"memory": {}, "redis": {}}, [EXACTLY_ONE_MESSAGE]),
        ({"redis": {"port": 70000}}, ["spec.redis.port", "65535"]),
        ({"redis": {"db": -1}}, ["spec.redis.db"]),
        ({"memory": {}, "deletionPolicy": "Forget"}, ["spec.deletionPolicy", '"Retain"']),
        ({"memory": {}, "probeIntervalSeconds": 0}, ["spec.probeIntervalSeconds"]),
        ({"memory": {}, "operationTimeoutSeconds": 0}, ["spec.operationTimeoutSeconds"]),
        ({"memory": {}, "prefix": "has space"}, ["spec.prefix", "should match"]),
        ({"postgresql": {"sslmode": "sometimes"}}, ["spec.postgresql.sslmode"]),
        ({"dynamodb": {"region": "eu-west-1"}}, ["spec.dynamodb.table", "Required"]),
        ({"dynamodb": {"table": "tbl", "region": "eu west"}}, ["spec.dynamodb.region", "should"]),
        (
            {"dynamodb": {"table": "tbl", "endpointUrl": "localhost:8000"}},
            ["spec.dynamodb.endpointUrl", "should match"],
        ),
        ({"redisSentinel": {"master": "m", "sentinels": []}}, ["spec.redisSentinel.sentinels"]),
        (
            {"redis": {"passwordSecretRef": {"name": "Not_A_Name", "key": "k"}}},
            ["spec.redis.passwordSecretRef.name"],
        ),
        ({"redis": {"passwordSecretRef": {"name": "auth"}}}, ["spec.redis.passwordSecretRef.key"]),
        ({"memory": {}, "locks": {"defaultTtlSeconds": -1}}, ["spec.locks.defaultTtlSeconds"]),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_schema_rejects_with_the_field_named(
    kube: KubeApi, namespace: str, spec: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(KubeApiError) as caught:
        await kube.create(stores_path(namespace), body(spec))
    assert caught.value.status == 422, caught.value
    for text in expected:
        assert text in caught.value.message, caught.value.message


async def test_unknown_fields_and_plain_text_passwords_are_refused(
    kube: KubeApi, namespace: str
) -> None:
    with pytest.raises(KubeApiError) as caught:
        await kube.request(
            "POST",
            stores_path(namespace),
            params={"fieldValidation": "Strict"},
            body=body({"redis": {"password": "in plain text"}}),
        )
    assert caught.value.status in (400, 422)
    assert "spec.redis.password" in caught.value.message


async def test_defaults_are_filled_in_by_the_server(kube: KubeApi, namespace: str) -> None:
    created = await kube.create(stores_path(namespace), body({"redis": {"host": "redis"}}))
    spec = created["spec"]
    assert spec["redis"]["port"] == 6379
    assert spec["redis"]["tls"] == {"enabled": False, "verify": True}
    assert spec["deletionPolicy"] == "Retain"
    assert spec["locks"] == {"defaultTtlSeconds": 30, "leaseMirroring": False}
    assert spec["probeIntervalSeconds"] == 10


def test_kubectl_shows_the_printer_columns(installed: ControlPlane, namespace: str) -> None:
    installed.kubectl(
        "apply", "-n", namespace, "-f", "-", input='{"apiVersion": "lockyard.dev/v1alpha1", '
        '"kind": "StateStore", "metadata": {"name": "cols"}, "spec": {"memory": {}}}',
    )  # fmt: skip
    out = installed.kubectl("get", "lystore", "-n", namespace, "-o", "wide").stdout
    assert out.split()[:6] == ["NAME", "BACKEND", "READY", "LOCKS", "AGE", "REASON"]
    rejected = installed.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False,
        input='{"apiVersion": "lockyard.dev/v1alpha1", "kind": "StateStore", '
        '"metadata": {"name": "two"}, "spec": {"memory": {}, "redis": {}}}',
    )  # fmt: skip
    assert rejected.returncode != 0
    assert EXACTLY_ONE_MESSAGE in rejected.stderr
