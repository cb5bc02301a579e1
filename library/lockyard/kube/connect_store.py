"""Opening a StateStore's backend from inside a pod (``lockyard.connect_store`` is built on it).

Two ways in, the first that applies wins:

1. A mounted binding: ``$SERVICE_BINDING_ROOT/<name>/`` holding one file per binding key (the
   Service Binding for Kubernetes layout; see :mod:`lockyard.kube.binding`). No API access.
2. The Kubernetes API: the store's binding Secret (:mod:`lockyard.kube.binding_reader`). This
   needs ``get`` on the StateStore and the Secret, which the Role ``lockyard-store-<name>`` the
   operator makes grants.

The namespace, unless given, follows the credentials (:func:`lockyard.kube.config.
current_namespace`): the pod's own, else the kubeconfig context's, else ``default``. Whether to
mirror held locks as Leases is the caller's decision (``lockyard.workloads``): this package never
imports the mirror, which is built on it.
"""

from __future__ import annotations

import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path

from lockyard.connection import Connection, open_connection
from lockyard.errors import ConfigError
from lockyard.kube.api import KubeApi
from lockyard.kube.binding import FILE_PARAMS, StoreBinding, read_binding
from lockyard.kube.binding_reader import open_binding
from lockyard.kube.config import current_namespace

SERVICE_BINDING_ROOT = "SERVICE_BINDING_ROOT"


@dataclass(frozen=True, slots=True)
class OpenedStore:
    """An open handle on a StateStore's backend, with the binding it came from."""

    connection: Connection
    binding: StoreBinding
    name: str
    namespace: str


async def open_store(name: str, namespace: str | None = None) -> Connection:
    """Connect to the StateStore ``name``; see the module docstring for where it looks."""
    return (await open_bound_store(name, namespace)).connection


async def open_bound_store(name: str, namespace: str | None = None) -> OpenedStore:
    """:func:`open_store`, keeping the binding (its ``lease_mirroring`` flag, its TTL)."""
    namespace = namespace or current_namespace()
    mounted = mounted_binding_dir(name)
    if mounted is not None:
        binding = read_mounted_binding(mounted)
        return OpenedStore(await open_connection(binding.url), binding, name, namespace)
    try:
        api = await KubeApi.connect(workers=1)
    except ConfigError as exc:
        raise ConfigError(
            f"cannot read StateStore {namespace}/{name} through the Kubernetes API ({exc}); "
            "or mount its binding Secret under $SERVICE_BINDING_ROOT"
        ) from exc
    async with api:
        binding, files = await open_binding(api, namespace, name)
    try:
        connection = await open_connection(binding.url)
    except BaseException:
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)
        raise
    if files is not None:
        # The driver reads the files again for every new connection: keep them while it lives.
        weakref.finalize(connection, shutil.rmtree, files, True)
    return OpenedStore(connection, binding, name, namespace)


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
