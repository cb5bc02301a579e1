"""Reading a StateStore's binding Secret through the API: the one reader behind
``connect_store`` and the CLI (``lockyard locks --verify``, ``lockyard locks break``).

The Secret's name is the store's ``status.binding.name``, else the operator's naming rule
(``lockyard-store-<store>``): the Secret is what a workload needs, so a store whose status is not
written yet, or a binding published without a StateStore, still works. Every failure is a
``ConfigError`` that names the object, its namespace and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lockyard.errors import ConfigError
from lockyard.kube.api import KubeApi
from lockyard.kube.binding import StoreBinding, decode_secret_data, read_secret_binding
from lockyard.kube.errors import KubeApiError, KubeUnreachableError
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import secrets_path, stores_path


async def read_binding_secret(api: KubeApi, namespace: str, store: str) -> dict[str, str]:
    """The decoded data of StateStore ``namespace/store``'s binding Secret."""
    found = await _get(api, stores_path(namespace, store), f"StateStore {namespace}/{store}", store)
    binding = (((found or {}).get("status") or {}).get("binding") or {}).get("name")
    name = binding if isinstance(binding, str) and binding else store_object_name(store)
    what = f"binding Secret {namespace}/{name}"
    secret = await _get(api, secrets_path(namespace, name), what, store)
    if secret is None:
        raise ConfigError(
            f"StateStore {namespace}/{store} has no binding Secret {namespace}/{name}: the "
            "operator publishes it once the StateStore exists and is Ready; see "
            f"`kubectl get statestore {store} -n {namespace}`"
        )
    return decode_secret_data(secret, what)


async def open_binding(
    api: KubeApi, namespace: str, store: str
) -> tuple[StoreBinding, Path | None]:
    """The store's binding, and the private folder its file keys were written to (or ``None``;
    the caller deletes it once the connection no longer needs the files)."""
    data = await read_binding_secret(api, namespace, store)
    try:
        return read_secret_binding(data, store)
    except ConfigError as exc:
        raise ConfigError(f"StateStore {namespace}/{store}: {exc}") from exc


async def _get(api: KubeApi, path: str, what: str, store: str) -> dict[str, Any] | None:
    try:
        return await api.get_or_none(path)
    except KubeApiError as exc:
        raise ConfigError(api_problem(exc, what, store)) from exc


def api_problem(exc: KubeApiError, what: str, store: str) -> str:
    """A sentence for a failed read of ``what`` (an object of StateStore ``store``)."""
    if exc.forbidden:
        return (
            f"not allowed to read {what} (HTTP {exc.status}): the identity in use needs `get` "
            f"on it, which the store's Role {store_object_name(store)} grants (bind the "
            "workload's ServiceAccount to it)"
        )
    if isinstance(exc, KubeUnreachableError):
        return f"cannot reach the Kubernetes API to read {what}: {exc.detail}"
    return f"reading {what} failed: {exc}"
