"""API paths of the objects Lockyard reads and writes, so no caller spells them out again.

``namespace=None`` is the collection across every namespace (one cluster-wide LIST).
"""

from __future__ import annotations

from urllib.parse import quote

from lockyard.identity import API_GROUP, API_VERSION, PLURAL

LEASE_GROUP = "coordination.k8s.io"
LEASE_API_VERSION = f"{LEASE_GROUP}/v1"


def object_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path of a collection or object (``group`` "" is the core group)."""
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def stores_path(namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    """StateStores, one of them, or one's subresource (``status``)."""
    return object_path(API_GROUP, API_VERSION, PLURAL, namespace, name, sub)


def secrets_path(namespace: str | None, name: str | None = None) -> str:
    return object_path("", "v1", "secrets", namespace, name)


def leases_path(namespace: str | None, name: str | None = None) -> str:
    return object_path(LEASE_GROUP, "v1", "leases", namespace, name)


def roles_path(namespace: str | None, name: str | None = None) -> str:
    return object_path("rbac.authorization.k8s.io", "v1", "roles", namespace, name)
