"""Helpers of the operator's end-to-end tests (see conftest.py for the fixtures)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from lockyard.config.resource import API_GROUP, API_VERSION
from lockyard.kube.api import KubeApi, object_path
from lockyard.kube.paths import secrets_path as secrets_path
from lockyard.kube.paths import stores_path as stores_path
from lockyard_dev.cluster.operator_process import OperatorProcess
from lockyard_dev.repository import repository_root

REPO = repository_root()
OPERATOR_NAMESPACE = "lockyard-system"
OPERATOR_ACCOUNT = "lockyard-operator"
#: Probe interval the tests use: short, so outages show within seconds.
PROBE_S = 2


class Operators:
    """Starts operator processes for one test; remembers secrets that must never be logged."""

    def __init__(self, kubeconfig: Path, folder: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.folder = folder
        self.namespace = namespace
        self.started: list[OperatorProcess] = []
        self.secrets: set[str] = set()

    async def start(
        self, *extra: str, scope: list[str] | None = None, kubeconfig: Path | None = None
    ) -> OperatorProcess:
        args = scope if scope is not None else [f"--namespace={self.namespace}"]
        log = self.folder / f"operator-{len(self.started)}.log"
        process = OperatorProcess(kubeconfig or self.kubeconfig, [*args, *extra], log).start()
        self.started.append(process)
        if await process.wait_healthy(30.0) is None:
            state = "is not healthy" if process.running else "exited"
            raise AssertionError(f"the operator {state}:\n{process.log()[-4000:]}")
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()

    def leaked(self) -> list[str]:
        """Secrets found in the logs, as written or in the encodings a leak would take."""
        logs = "".join(p.log() for p in self.started)
        return sorted(s for s in self.secrets if any(form in logs for form in leak_forms(s)))

    def troubles(self) -> list[str]:
        """Log lines showing missing permissions, lost events or unexpected crashes."""
        return [line for process in self.started for line in process.troubles()]


def leak_forms(secret: str) -> set[str]:
    """A secret as written, URL- and form-encoded, and base64-encoded (a Secret's data)."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
    }


# -- helpers the tests share -------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0, every: float = 0.1
) -> Any:
    """Poll ``probe`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


async def create_secret(
    kube: KubeApi, namespace: str, name: str, data: dict[str, str]
) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
    return await kube.create(secrets_path(namespace), body)


async def create_raw_secret(
    kube: KubeApi, namespace: str, name: str, data: dict[str, bytes]
) -> dict[str, Any]:
    """A Secret holding arbitrary bytes (``data``, base64), which ``stringData`` cannot carry."""
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    return await kube.create(secrets_path(namespace), body)


async def update_secret(kube: KubeApi, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    await kube.merge_patch(secrets_path(namespace, name), {"data": encoded})


async def read_secret(kube: KubeApi, namespace: str, name: str) -> dict[str, str]:
    secret = await kube.get(secrets_path(namespace, name))
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


async def create_store(
    kube: KubeApi, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "StateStore",
        "metadata": {"name": name},
        "spec": {"probeIntervalSeconds": PROBE_S, **spec},
    }
    return await kube.create(stores_path(namespace), body)


def condition(store: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((store or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


async def wait_condition(
    kube: KubeApi,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The StateStore once its condition ``type_`` has ``status`` (and ``reason``)."""

    async def probe() -> dict[str, Any] | None:
        store = await kube.get_or_none(stores_path(namespace, name))
        found = condition(store, type_)
        if found.get("status") == status and (reason is None or found.get("reason") == reason):
            return store
        return None

    try:
        result: dict[str, Any] = await eventually(
            probe, f"{name}: {type_}={status} {reason or ''}", timeout
        )
    except AssertionError:
        store = await kube.get_or_none(stores_path(namespace, name))
        status_now = json.dumps((store or {}).get("status"), indent=1)
        raise AssertionError(
            f"{name} never reached {type_}={status} {reason}: {status_now}"
        ) from None
    return result


async def events_for(kube: KubeApi, namespace: str, name: str) -> list[dict[str, Any]]:
    found = await kube.get(
        object_path("", "v1", "events", namespace),
        params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind=StateStore"},
    )
    return list(found.get("items") or [])


async def wait_gone(kube: KubeApi, path: str, timeout: float = 30.0) -> None:
    async def gone() -> bool:
        return await kube.get_or_none(path) is None

    await eventually(gone, f"{path} to be deleted", timeout)


def backend_spec(
    kind: str, server: Any, secret: str = "auth"
) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec section for a test server of ``kind``, and the Secret data it references."""
    ref = {"name": secret, "key": "password"}
    if kind == "redis":
        section = {"host": "127.0.0.1", "port": server.port, "passwordSecretRef": ref}
        return {"redis": section}, {"password": server.password}
    if kind == "postgresql":
        section = {
            "host": "127.0.0.1",
            "port": server.port,
            "user": server.user,
            "database": server.database,
            "passwordSecretRef": ref,
        }
        return {"postgresql": section}, {"password": server.password}
    if kind == "dynamodb":
        section = {
            "table": f"lockyard-{secret}",
            "endpointUrl": server.endpoint_url,
            "createTable": True,
            "accessKeyIdSecretRef": {"name": secret, "key": "key-id"},
            "secretAccessKeySecretRef": ref,
        }
        return {"dynamodb": section}, {"key-id": "AKIDTESTING", "password": "dynamo-secret-42"}
    raise ValueError(kind)
