"""Lockyard's one Kubernetes client, and the objects a StateStore publishes.

The StateStore resource's names and labels live in the leaf :mod:`lockyard.identity`.

- :mod:`~lockyard.kube.paths`: every API path Lockyard uses;
- :mod:`~lockyard.kube.config`: where credentials and the default namespace come from;
- :mod:`~lockyard.kube.errors`: ``KubeApiError`` and ``KubeUnreachableError``;
- :mod:`~lockyard.kube.client`: ``KubeClient``, blocking JSON calls on the official client;
- :mod:`~lockyard.kube.api`: ``KubeApi``, the same calls for asyncio (in worker threads);
- :mod:`~lockyard.kube.binding`, :mod:`~lockyard.kube.binding_reader`: the binding Secret;
- :mod:`~lockyard.kube.connect_store`: opening a store from a pod;
- :mod:`~lockyard.kube.leader_record`, :mod:`~lockyard.kube.lease_election`: leader election on
  a Lease with client-go's record and semantics (the operator's replicas use it).

Everything is loaded on first use, so importing one module (the CLI, the CRD models) pays for
that module alone, and the ``kubernetes`` package is needed only for API calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard._lazy import lazy_exports

if TYPE_CHECKING:
    from lockyard.identity import STORE_LABEL
    from lockyard.kube.api import KubeApi
    from lockyard.kube.binding import BINDING_TYPE, StoreBinding, binding_data, read_binding
    from lockyard.kube.binding_reader import open_binding, read_binding_secret
    from lockyard.kube.client import KubeClient
    from lockyard.kube.config import current_namespace, load_api_client
    from lockyard.kube.errors import KubeApiError, KubeUnreachableError
    from lockyard.kube.names import store_label_value, store_object_name

_LAZY = {
    "KubeApi": "lockyard.kube.api",
    "BINDING_TYPE": "lockyard.kube.binding",
    "StoreBinding": "lockyard.kube.binding",
    "binding_data": "lockyard.kube.binding",
    "read_binding": "lockyard.kube.binding",
    "open_binding": "lockyard.kube.binding_reader",
    "read_binding_secret": "lockyard.kube.binding_reader",
    "KubeClient": "lockyard.kube.client",
    "current_namespace": "lockyard.kube.config",
    "load_api_client": "lockyard.kube.config",
    "KubeApiError": "lockyard.kube.errors",
    "KubeUnreachableError": "lockyard.kube.errors",
    "STORE_LABEL": "lockyard.identity",
    "store_label_value": "lockyard.kube.names",
    "store_object_name": "lockyard.kube.names",
}

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

__all__ = [
    "BINDING_TYPE",
    "STORE_LABEL",
    "KubeApi",
    "KubeApiError",
    "KubeClient",
    "KubeUnreachableError",
    "StoreBinding",
    "binding_data",
    "current_namespace",
    "load_api_client",
    "open_binding",
    "read_binding",
    "read_binding_secret",
    "store_label_value",
    "store_object_name",
]
