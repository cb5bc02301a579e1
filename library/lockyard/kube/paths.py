"""API paths of the objects Lockyard reads and writes, so no caller spells them out again."""

from __future__ import annotations

from lockyard.config.resource import API_GROUP, API_VERSION, PLURAL
from lockyard.kube.api import object_path


def stores_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """A namespace's StateStores, one of them, or one's subresource (``status``)."""
    return object_path(API_GROUP, API_VERSION, PLURAL, namespace, name, sub)


def secrets_path(namespace: str, name: str | None = None) -> str:
    return object_path("", "v1", "secrets", namespace, name)


def leases_path(namespace: str, name: str | None = None) -> str:
    return object_path("coordination.k8s.io", "v1", "leases", namespace, name)


def roles_path(namespace: str, name: str | None = None) -> str:
    return object_path("rbac.authorization.k8s.io", "v1", "roles", namespace, name)
