"""Helpers of the operator's end-to-end tests (see conftest.py for the fixtures)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lockyard.config.resource import API_GROUP, API_VERSION, PLURAL
from lockyard.kube.api import KubeApi, object_path
from lockyard.testing.servers.process import free_port
from lockyard_operator.testing.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[3]
OPERATOR_NAMESPACE = "lockyard-system"
OPERATOR_ACCOUNT = "lockyard-operator"
#: Probe interval the tests use: short, so outages show within seconds.
PROBE_S = 2


def stores_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return object_path(API_GROUP, API_VERSION, PLURAL, namespace, name, sub)


def secrets_path(namespace: str, name: str | None = None) -> str:
    return object_path("", "v1", "secrets", namespace, name)


def write_kubeconfig(
    path: Path, plane: ControlPlane, user: str, token: str, namespace: str | None = None
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lockyard",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": user,
                "context": {"cluster": "lockyard", "user": user}
                | ({"namespace": namespace} if namespace else {}),
            }
        ],
        "current-context": user,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def service_account_token(plane: ControlPlane, namespace: str, account: str) -> str:
    """A token of ``account`` through the TokenRequest API (``kubectl create token``)."""
    result = plane.kubectl("create", "token", account, "-n", namespace, "--duration=2h")
    return result.stdout.strip()


class OperatorProcess:
    """``python -m lockyard_operator`` as a child process, logging to a file."""

    def __init__(self, kubeconfig: Path, args: list[str], log: Path) -> None:
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.args = [
            *args,
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        self.kubeconfig = kubeconfig
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lockyard_operator", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.healthy):
            if not self.running:
                raise AssertionError(f"the operator exited:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the operator is not healthy:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.1)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Operators:
    """Starts operator processes for one test; remembers secrets that must never be logged."""

    def __init__(self, kubeconfig: Path, folder: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.folder = folder
        self.namespace = namespace
        self.started: list[OperatorProcess] = []
        self.secrets: set[str] = set()

    async def start(self, *extra: str, scope: list[str] | None = None) -> OperatorProcess:
        args = scope if scope is not None else [f"--namespace={self.namespace}"]
        log = self.folder / f"operator-{len(self.started)}.log"
        process = OperatorProcess(self.kubeconfig, [*args, *extra], log).start()
        self.started.append(process)
        await process.wait_healthy()
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()

    def leaked(self) -> list[str]:
        logs = "".join(p.log() for p in self.started)
        return sorted(s for s in self.secrets if s in logs)

    def troubles(self) -> list[str]:
        """Log lines showing missing permissions or unexpected crashes."""
        lines = "".join(p.log() for p in self.started).splitlines()
        return [line for line in lines if "Forbidden" in line or line.startswith("Traceback")]


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
