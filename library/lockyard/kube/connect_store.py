"""``lockyard.connect_store(name)``: open a StateStore's backend from inside a pod.

Two ways in, the first that applies wins:

1. A mounted binding: ``$SERVICE_BINDING_ROOT/<name>/`` holding one file per binding key (the
   Service Binding for Kubernetes layout; see :mod:`lockyard.kube.binding`). No API access.
2. The Kubernetes API: the StateStore's ``status.binding.name``, then that Secret. This needs
   ``get`` on both, which the Role ``lockyard-store-<name>`` the operator makes grants.

The namespace, unless given, is the pod's own (the service account's namespace file), else the
current kubeconfig context's, else ``default``. When the binding says ``lease-mirroring: true``,
held locks are mirrored as Leases (``lockyard.mirror``, through the API), which the store's
Role allows. The ``kubernetes`` client is imported only for the second way and for mirroring.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import weakref
from pathlib import Path
from typing import Any

from lockyard.connection import Connection, open_connection
from lockyard.errors import ConfigError
from lockyard.kube.api import KubeApi, KubeApiError
from lockyard.kube.binding import (
    FILE_PARAMS,
    StoreBinding,
    decode_secret_data,
    read_binding,
    read_secret_binding,
)
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import secrets_path, stores_path

log = logging.getLogger(__name__)

SERVICE_BINDING_ROOT = "SERVICE_BINDING_ROOT"
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "default"


async def open_store(name: str, namespace: str | None = None) -> Connection:
    """Connect to the StateStore ``name``; see the module docstring for where it looks."""
    mounted = mounted_binding_dir(name)
    if mounted is not None:
        binding = read_mounted_binding(mounted)
        connection = await open_connection(binding.url)
        _mirror_if_asked(connection, binding, name, namespace or current_namespace())
        return connection
    namespace = namespace or current_namespace()
    data = await _read_binding_secret(name, namespace)
    binding, files = read_secret_binding(data, name)
    try:
        connection = await open_connection(binding.url)
    except BaseException:
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)
        raise
    if files is not None:
        # The driver reads the files again for every new connection: keep them while it lives.
        weakref.finalize(connection, shutil.rmtree, files, True)
    _mirror_if_asked(connection, binding, name, namespace)
    return connection


def _mirror_if_asked(
    connection: Connection, binding: StoreBinding, name: str, namespace: str
) -> None:
    """Mirror held locks as Leases when the store asks for it (``lease-mirroring: true``).

    Mirroring never stops a workload: without the ``kubernetes`` client it is skipped with a
    warning (``lockyard.mirror.maybe_mirror`` does the same for missing credentials).
    """
    if not binding.lease_mirroring:
        return
    try:
        from lockyard.mirror import maybe_mirror
    except ModuleNotFoundError as exc:
        log.warning("lease mirroring for %s/%s is off: needs %r", namespace, name, exc.name)
        return
    maybe_mirror(connection, binding, store_name=name, namespace=namespace)


def mounted_binding_dir(name: str) -> Path | None:
    """``$SERVICE_BINDING_ROOT/<name>`` if it holds a binding, else ``None``."""
    root = os.environ.get(SERVICE_BINDING_ROOT)
    if not root:
        return None
    folder = Path(root) / name
    return folder if (folder / "type").is_file() else None


def read_mounted_binding(folder: Path) -> StoreBinding:
    """The binding mounted in ``folder`` (one file per key; file keys are used in place)."""
    data = {
        entry.name: entry.read_text()
        for entry in folder.iterdir()
        if entry.is_file() and entry.name not in FILE_PARAMS.values()
    }
    data |= {key: "" for key in FILE_PARAMS.values() if (folder / key).is_file()}
    return read_binding(data, lambda key: str(folder / key))


def current_namespace() -> str:
    """The pod's namespace, else the kubeconfig context's, else ``default``."""
    try:
        namespace = POD_NAMESPACE_FILE.read_text().strip()
    except OSError:
        namespace = ""
    if namespace:
        return namespace
    try:
        config: Any = importlib.import_module("kubernetes.config")
        # $KUBECONFIG read now: the client reads it once, when first imported.
        _, active = config.list_kube_config_contexts(os.environ.get("KUBECONFIG") or None)
    except Exception:  # no client, no kubeconfig, or an unreadable one: the documented default
        return DEFAULT_NAMESPACE
    context = (active or {}).get("context") or {}
    return str(context.get("namespace") or DEFAULT_NAMESPACE)


async def _read_binding_secret(name: str, namespace: str) -> dict[str, str]:
    """The data of StateStore ``name``'s binding Secret, decoded."""
    try:
        api = await KubeApi.connect()
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"reading StateStore {namespace}/{name} through the Kubernetes API needs the Python "
            f"package {exc.name!r}: pip install 'lockyard[kubernetes]' (or mount the binding)"
        ) from exc
    except Exception as exc:  # the client's loaders raise several unrelated types
        raise ConfigError(
            f"cannot reach the Kubernetes API to find StateStore {namespace}/{name}: {exc}"
        ) from exc
    async with api:
        path = stores_path(namespace, name)
        try:
            store = await api.get(path)
        except KubeApiError as exc:
            raise ConfigError(_api_problem(exc, f"StateStore {namespace}/{name}", name)) from None
        binding = ((store.get("status") or {}).get("binding") or {}).get("name")
        if not binding:
            raise ConfigError(
                f"StateStore {namespace}/{name} has no binding yet; see its status conditions "
                f"(kubectl get statestore {name} -n {namespace})"
            )
        try:
            secret = await api.get(secrets_path(namespace, binding))
        except KubeApiError as exc:
            raise ConfigError(
                _api_problem(exc, f"binding Secret {namespace}/{binding}", name)
            ) from None
    return decode_secret_data(secret, f"binding Secret {namespace}/{binding}")


def _api_problem(exc: KubeApiError, what: str, store: str) -> str:
    if exc.not_found:
        return f"{what} not found"
    if exc.forbidden:
        return (
            f"not allowed to read {what} (HTTP {exc.status}): bind the workload's service "
            f"account to the store's Role {store_object_name(store)}"
        )
    return f"reading {what} failed: {exc}"
