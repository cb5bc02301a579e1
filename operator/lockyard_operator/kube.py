"""The Kubernetes client the operator's modules use, imported in this one place (so a change of
client is an edit here alone)."""

from __future__ import annotations

from lockyard.kube.api import KubeApi, KubeApiError, object_path
from lockyard.kube.paths import leases_path, roles_path, secrets_path, stores_path

__all__ = [
    "KubeApi",
    "KubeApiError",
    "leases_path",
    "object_path",
    "roles_path",
    "secrets_path",
    "stores_path",
]
