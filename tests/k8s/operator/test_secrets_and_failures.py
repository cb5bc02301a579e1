"""Bad input never crashes the operator: each problem gets its own reason, and the store heals
when the cause goes away (missing Secret created, Secret fixed, rotated).

Host process, not a pod: each failure is caused and healed at chosen moments, which needs only
the control plane; Secret rotation seen by a pod is in tests/node/test_node_operator_e2e.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_harness import (
    Operators,
    backend_spec,
    condition,
    create_secret,
    create_store,
    eventually,
    read_secret,
    secrets_path,
    stores_path,
    update_secret,
    wait_condition,
)

import lockyard
from lockyard.kube.api import KubeApi, object_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.process import free_port
from lockyard_dev.servers.redis import RedisServer, make_test_tls

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


def redis_spec(
    server: RedisServer, secret: str = "auth", key: str = "password"
) -> dict[str, object]:
    return {
        "redis": {
            "host": "127.0.0.1",
            "port": server.port,
            "passwordSecretRef": {"name": secret, "key": key},
        }
    }


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server this test may reconfigure (rotate its password, stop it)."""
    with RedisServer(password="first-password-1f2e") as server:
        yield server


async def test_missing_secret_then_created(
    kube: KubeApi, namespace: str, operators: Operators, redis_server: RedisServer
) -> None:
    password = redis_server.password or ""
    operators.secrets.add(password)
    await operators.start()
    await create_store(kube, namespace, "late", redis_spec(redis_server, "late-auth"))
    store = await wait_condition(kube, namespace, "late", "Ready", "False", "SecretNotFound")
    ready = condition(store, "Ready")
    assert "late-auth" in ready["message"]
    assert "password" in ready["message"]
    assert condition(store, "SecretsResolved")["status"] == "False"
    assert condition(store, "BackendReachable")["status"] == "Unknown"

    # A Secret without the key: still SecretNotFound, now naming the key.
    await create_secret(kube, namespace, "late-auth", {"pass": password})

    async def names_key() -> bool:
        current = await kube.get(stores_path(namespace, "late"))
        message = condition(current, "Ready")["message"]
        return 'key "password" not found in Secret "late-auth"' in message

    await eventually(names_key, "the message to name the missing key", timeout=15)

    fixed = time.monotonic()
    await update_secret(kube, namespace, "late-auth", {"password": password})
    await wait_condition(kube, namespace, "late", "Ready", "True", timeout=20)
    healed = time.monotonic() - fixed
    print(f"Ready {healed:.2f}s after the Secret was fixed")
    # The Secret watch reconciles at once; kopf's own retry would come much later.
    assert healed < 8


async def test_rotated_secret_updates_the_binding(
    kube: KubeApi, namespace: str, operators: Operators, own_redis: RedisServer
) -> None:
    old, new = "first-password-1f2e", "second-password-9a8b"
    operators.secrets |= {old, new}
    await operators.start()
    await create_secret(kube, namespace, "auth", {"password": old})
    await create_store(kube, namespace, "rotating", redis_spec(own_redis))
    store = await wait_condition(kube, namespace, "rotating", "Ready", "True")
    binding_name = store["status"]["binding"]["name"]
    assert old in (await read_secret(kube, namespace, binding_name))["url"]
    generation = store["metadata"]["generation"]

    with own_redis.admin() as admin:
        admin.config_set("requirepass", new)
    await update_secret(kube, namespace, "auth", {"password": new})

    async def rotated() -> bool:
        url = (await read_secret(kube, namespace, binding_name))["url"]
        return new in url and old not in url

    await eventually(rotated, "the binding to carry the new password", timeout=15)
    store = await wait_condition(kube, namespace, "rotating", "Ready", "True")
    assert store["metadata"]["generation"] == generation, "a Secret change is not a spec change"


async def test_wrong_password_unreachable_and_tls_each_have_their_reason(
    kube: KubeApi, namespace: str, operators: Operators, redis_server: RedisServer, tmp_path: Path
) -> None:
    operators.secrets |= {"not-the-password", redis_server.password or ""}
    await operators.start()
    await create_secret(kube, namespace, "wrong", {"password": "not-the-password"})
    await create_store(kube, namespace, "wrong-pass", redis_spec(redis_server, "wrong"))

    closed_port = free_port()
    await create_store(
        kube,
        namespace,
        "nobody-home",
        {"redis": {"host": "127.0.0.1", "port": closed_port}, "operationTimeoutSeconds": 1},
    )

    with RedisServer(tls=make_test_tls(tmp_path / "tls")) as tls_server:
        # TLS on, but no CA given: the server's certificate cannot be verified.
        await create_store(
            kube,
            namespace,
            "untrusted",
            {"redis": {"host": "127.0.0.1", "port": tls_server.port, "tls": {"enabled": True}}},
        )
        store = await wait_condition(kube, namespace, "untrusted", "Ready", "False", "TLSFailed")
        assert "certificate" in condition(store, "Ready")["message"].lower()

    store = await wait_condition(
        kube, namespace, "wrong-pass", "Ready", "False", "AuthenticationFailed"
    )
    assert condition(store, "BackendReachable")["reason"] == "AuthenticationFailed"
    store = await wait_condition(
        kube, namespace, "nobody-home", "Ready", "False", "BackendUnreachable"
    )
    assert condition(store, "BackendReachable")["status"] == "False"

    # Fixing the Secret heals the store.
    await update_secret(kube, namespace, "wrong", {"password": redis_server.password or ""})
    await wait_condition(kube, namespace, "wrong-pass", "Ready", "True", timeout=20)
    # Through all of it the operator kept running, and told nobody a password.
    assert all(p.running for p in operators.started)
    events = await kube.get(object_path("", "v1", "events", namespace))
    messages = " ".join(e.get("message", "") for e in events["items"])
    assert "AuthenticationFailed" in " ".join(e["reason"] for e in events["items"])
    for secret in operators.secrets:
        assert secret not in messages


async def test_unusable_secret_content_is_invalid_spec(
    kube: KubeApi, namespace: str, operators: Operators, redis_server: RedisServer
) -> None:
    await operators.start()
    binary = base64.b64encode(b"\xff\xfe\x00not text").decode()
    await kube.create(
        secrets_path(namespace),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "binary"},
         "data": {"password": binary}},
    )  # fmt: skip
    await create_store(kube, namespace, "garbled", redis_spec(redis_server, "binary"))
    store = await wait_condition(kube, namespace, "garbled", "Ready", "False", "InvalidSpec")
    assert "not UTF-8" in condition(store, "Ready")["message"]


async def test_postgres_wrong_password_is_authentication_failed(
    kube: KubeApi, namespace: str, operators: Operators, postgres_server: PostgresServer
) -> None:
    spec, _ = backend_spec("postgresql", postgres_server)
    operators.secrets |= {"wrong-pg-password", postgres_server.password}
    await operators.start()
    await create_secret(kube, namespace, "auth", {"password": "wrong-pg-password"})
    await create_store(kube, namespace, "pg", spec)
    store = await wait_condition(kube, namespace, "pg", "Ready", "False", "AuthenticationFailed")
    assert "wrong-pg-password" not in str(store)
    await update_secret(kube, namespace, "auth", {"password": postgres_server.password})
    await wait_condition(kube, namespace, "pg", "Ready", "True", timeout=20)


async def test_tls_with_a_ca_from_a_secret(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    installed: ControlPlane,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = make_test_tls(tmp_path / "tls")
    ca = await asyncio.to_thread(Path(tls.ca_file).read_text)
    await operators.start()
    with RedisServer(tls=tls) as server:
        await create_secret(kube, namespace, "redis-tls", {"ca.crt": ca})
        spec = {
            "redis": {
                "host": "127.0.0.1",
                "port": server.port,
                "tls": {"enabled": True, "caSecretRef": {"name": "redis-tls", "key": "ca.crt"}},
            }
        }
        await create_store(kube, namespace, "secure", spec)
        store = await wait_condition(kube, namespace, "secure", "Ready", "True")
        binding = await read_secret(kube, namespace, store["status"]["binding"]["name"])
        assert binding["tls_ca_file"] == ca
        assert binding["url"].startswith("rediss://")

        # A workload outside the cluster: connect_store through the API, as the admin.
        monkeypatch.setenv("KUBECONFIG", str(installed.kubeconfig))
        monkeypatch.delenv("SERVICE_BINDING_ROOT", raising=False)
        connection = await lockyard.connect_store("secure", namespace)
        try:
            assert connection.backend == "redis"
            await connection.store.set("a:b:c:d", "over TLS")
            assert await connection.store.get("a:b:c:d") == "over TLS"
        finally:
            await connection.close()
