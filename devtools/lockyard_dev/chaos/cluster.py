"""The Kubernetes side of ``make chaos``: a local control plane with Lockyard installed the way a
user installs it, operator processes, and workload identities.

:class:`Cluster` starts a :class:`~lockyard_dev.cluster.controlplane.ControlPlane` (the
binaries ``make controlplane`` builds), applies ``deploy/`` with ``kubectl apply -k`` (CRDs,
``lockyard-system``, the operator's ServiceAccount and ClusterRole) and writes a kubeconfig
holding a TokenRequest token of that ServiceAccount. The operators it starts
(:class:`OperatorProcess`: ``python -m lockyard_operator``, as the e2e tests and ``make demo``
run it) therefore have exactly the rights the ClusterRole grants. A workload gets a
ServiceAccount of its own bound to its store's Role ``lockyard-store-<name>``, as a pod would
(:meth:`Cluster.workload_kubeconfig`). Scenarios share one cluster, each in its own namespace.

Every wait here polls with a deadline and returns ``None`` when it runs out: a scenario turns
that into a figure ("not recovered"), never into a crash.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lockyard.config.resource import API_GROUP, API_VERSION
from lockyard.kube.api import KubeApi, KubeApiError, object_path
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import secrets_path, stores_path
from lockyard_dev.chaos.driver import ScenarioUnavailable
from lockyard_dev.cluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    find_binaries,
)
from lockyard_dev.cluster.identities import service_account_token, token_kubeconfig
from lockyard_dev.cluster.operator_process import OperatorProcess
from lockyard_dev.repository import RepositoryNotFound, repository_root

T = TypeVar("T")

OPERATOR_NAMESPACE = "lockyard-system"
OPERATOR_ACCOUNT = "lockyard-operator"
WORKLOAD_ACCOUNT = "chaos-workload"
#: Long enough for any run: the tokens are minted once per cluster or scenario.
TOKEN_DURATION = "6h"


class RunningOperator(Protocol):
    """What a scenario does with an operator: an :class:`OperatorProcess`, or the operator's
    pods on a node (:class:`lockyard_dev.chaos.operator_pods.OperatorPods`)."""

    #: ``time.monotonic()`` at the last start.
    started_at: float

    def start(self) -> RunningOperator: ...
    async def wait_healthy(self) -> float | None: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def tail(self, lines: int = 20) -> str: ...
    def troubles(self) -> list[str]: ...


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    """``Ready=True`` for the object's current generation."""
    if obj is None:
        return False
    ready = condition(obj, "Ready")
    generation = (obj.get("metadata") or {}).get("generation")
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and (obj.get("status") or {}).get("observedGeneration") == generation
    )


def decode(secret: Mapping[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


async def poll(
    probe: Callable[[], Awaitable[T | None]], timeout: float, every: float = 0.1
) -> T | None:
    """Await ``probe()`` until it returns something truthy (that value), or ``None`` once
    ``timeout`` seconds have passed. An API error counts as "not yet" (the API may be coming
    back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await probe()
        except KubeApiError:
            found = None
        if found:
            return found
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(every)


class Cluster:
    """A control plane with Lockyard installed; ``await Cluster.start()``, then ``close()``."""

    def __init__(self, plane: ControlPlane, workdir: Path, api: KubeApi) -> None:
        self.plane = plane
        self.workdir = workdir
        self.api = api
        self.operator_kubeconfig = workdir / "operator.kubeconfig"

    @classmethod
    async def start(cls) -> Cluster:
        """Start and install; ``ScenarioUnavailable`` when that cannot be done here."""
        try:
            deploy = repository_root() / "deploy"
        except RepositoryNotFound as exc:
            raise ScenarioUnavailable(str(exc)) from exc
        if not (deploy / "kustomization.yaml").is_file():
            raise ScenarioUnavailable(f"{deploy / 'kustomization.yaml'} not found")
        try:
            bin_dir = find_binaries()
        except ControlPlaneError as exc:
            raise ScenarioUnavailable(str(exc).splitlines()[0]) from exc
        workdir = Path(tempfile.mkdtemp(prefix="lockyard-chaos-"))
        try:
            plane = ControlPlane(workdir / "cluster", bin_dir=bin_dir)
            await asyncio.to_thread(plane.start)
        except ControlPlaneError as exc:
            # The folder stays: the message names the log in it.
            raise ScenarioUnavailable(str(exc).splitlines()[0]) from exc
        try:
            api = await KubeApi.connect(str(plane.kubeconfig))
            cluster = cls(plane, workdir, api)
            await cluster._install(deploy)
        except BaseException:
            await asyncio.to_thread(plane.stop)
            raise
        return cluster

    async def close(self, keep: bool = False) -> None:
        """Stop the control plane; remove the working folder (logs included) unless ``keep``."""
        await self.api.close()
        await asyncio.to_thread(self.plane.stop)
        if keep:
            print(f"-- logs kept in {self.workdir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def kubectl(self, *args: str, input_text: str | None = None) -> str:
        done = await asyncio.to_thread(self.plane.kubectl, *args, input=input_text)
        return done.stdout

    async def _install(self, deploy: Path) -> None:
        await self.kubectl("apply", "-k", str(deploy))
        await self.kubectl(
            "wait", "--for=condition=Established", "crd/statestores.lockyard.dev",
            "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s",
        )  # fmt: skip
        token = await self.token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
        token_kubeconfig(self.operator_kubeconfig, self.plane, OPERATOR_ACCOUNT, token)

    async def token(self, namespace: str, account: str) -> str:
        """A token of ``account`` through the TokenRequest API (``kubectl create token``)."""
        return await asyncio.to_thread(
            service_account_token, self.plane, namespace, account, TOKEN_DURATION
        )

    async def create_namespace(self, stem: str) -> str:
        name = f"{stem}-{secrets.token_hex(3)}"
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self.api.create(object_path("", "v1", "namespaces"), body)
        return name

    async def delete_namespace(self, name: str) -> None:
        """Not waited for: the namespace controller empties it in the background."""
        await self.api.delete(object_path("", "v1", "namespaces", name=name))

    def operator(self, namespace: str, log: Path) -> OperatorProcess:
        return OperatorProcess(self.operator_kubeconfig, [f"--namespace={namespace}"], log)

    def operator_to_kill(self, namespace: str, log: Path) -> RunningOperator:
        """The operator ``operator-kill`` kills: a process here, pods on a node cluster."""
        return self.operator(namespace, log)

    async def workload_kubeconfig(self, namespace: str, store: str, path: Path) -> Path:
        """A kubeconfig of a ServiceAccount bound to ``store``'s Role, as a workload pod has."""
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": WORKLOAD_ACCOUNT},
        }
        await self.api.create(object_path("", "v1", "serviceaccounts", namespace), account)
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{WORKLOAD_ACCOUNT}-uses-{store}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": store_object_name(store),
            },
            "subjects": [{"kind": "ServiceAccount", "name": WORKLOAD_ACCOUNT}],
        }
        bindings = object_path("rbac.authorization.k8s.io", "v1", "rolebindings", namespace)
        await self.api.create(bindings, binding)
        token = await self.token(namespace, WORKLOAD_ACCOUNT)
        return token_kubeconfig(path, self.plane, WORKLOAD_ACCOUNT, token)

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": dict(data),
        }
        await self.api.create(secrets_path(namespace), body)

    async def create_store(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "StateStore",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        return await self.api.create(stores_path(namespace), body)

    async def wait_ready(
        self, namespace: str, name: str, timeout: float, every: float = 0.1
    ) -> dict[str, Any] | None:
        """The StateStore once Ready for its current generation, or ``None`` after ``timeout``."""

        async def probe() -> dict[str, Any] | None:
            store = await self.api.get_or_none(stores_path(namespace, name))
            return store if is_ready(store) else None

        return await poll(probe, timeout, every)

    async def wait_gone(self, path: str, timeout: float) -> bool:
        async def gone() -> bool:
            return await self.api.get_or_none(path) is None

        return bool(await poll(gone, timeout, 0.2))
