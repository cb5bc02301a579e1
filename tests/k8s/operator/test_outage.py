"""The periodic probe: a backend that goes away turns BackendReachable False within a probe
interval, with an Event; when it comes back the store is Ready again on its own.

Host process, not a pod: backends go away and come back at chosen moments, which needs only the
control plane, no node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from operator_harness import (
    PROBE_S,
    Operators,
    backend_spec,
    condition,
    create_secret,
    create_store,
    events_for,
    eventually,
    wait_condition,
)

from lockyard.kube.api import KubeApi
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

#: One probe interval, plus what a loaded machine needs to notice and write the status.
NOTICE_WITHIN_S = PROBE_S + 4


@pytest.fixture(params=["redis", "postgresql", "dynamodb"])
def flaky(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """A server of its own that the test stops and starts again (same port)."""
    kind = request.param
    server: Any = {
        "redis": lambda: RedisServer(password="outage-password-77"),
        "postgresql": lambda: PostgresServer(password="outage-password-77"),
        "dynamodb": MotoServer,
    }[kind]()
    with server:
        yield kind, server


async def test_backend_stopped_then_restarted(
    kube: KubeApi, namespace: str, operators: Operators, flaky: tuple[str, Any]
) -> None:
    kind, server = flaky
    spec, secret = backend_spec(kind, server)
    operators.secrets |= set(secret.values())
    await operators.start()
    await create_secret(kube, namespace, "auth", secret)
    await create_store(kube, namespace, "flaky", {**spec, "operationTimeoutSeconds": 1})
    await wait_condition(kube, namespace, "flaky", "Ready", "True")

    server.stop()
    stopped = time.monotonic()
    store = await wait_condition(
        kube, namespace, "flaky", "BackendReachable", "False", timeout=NOTICE_WITHIN_S + 10
    )
    noticed = time.monotonic() - stopped
    print(f"{kind}: outage noticed after {noticed:.2f}s (probe interval {PROBE_S}s)")
    assert noticed < NOTICE_WITHIN_S
    reachable = condition(store, "BackendReachable")
    assert reachable["reason"] == "BackendUnreachable", reachable
    assert reachable["message"]
    assert condition(store, "Ready")["status"] == "False"

    async def warned() -> bool:
        events = await events_for(kube, namespace, "flaky")
        return any(e["reason"] == "BackendUnreachable" and e["type"] == "Warning" for e in events)

    await eventually(warned, "a Warning event about the outage", timeout=10)

    server.start()
    restarted = time.monotonic()
    await wait_condition(kube, namespace, "flaky", "Ready", "True", timeout=NOTICE_WITHIN_S + 10)
    recovered = time.monotonic() - restarted
    print(f"{kind}: recovery noticed after {recovered:.2f}s")
    assert recovered < NOTICE_WITHIN_S

    async def recovered_event() -> bool:
        events = await events_for(kube, namespace, "flaky")
        return any(e["reason"] == "BackendRecovered" for e in events)

    await eventually(recovered_event, "a BackendRecovered event", timeout=10)
