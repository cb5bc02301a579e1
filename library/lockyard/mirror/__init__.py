"""Every held lock visible in the cluster: Lockyard locks mirrored as Kubernetes Leases.

``enable_lease_mirroring(connection, store, namespace)`` attaches a :class:`LeaseMirror` to a
handle; ``maybe_mirror(connection, binding, ...)`` does so when the store's binding asks for it.
Lease names, labels and annotations are defined in :mod:`lockyard.mirror.lease_names`; reading
Leases back is :mod:`lockyard.mirror.leases`. Needs the ``kubernetes`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockyard.mirror.kubeapi import KubeApiError, KubeClient, load_api_client
    from lockyard.mirror.lease_mirror import (
        Holder,
        LeaseMirror,
        MirrorMetrics,
        enable_lease_mirroring,
        maybe_mirror,
        mirror_of,
    )
    from lockyard.mirror.lease_names import lease_name, store_selector
    from lockyard.mirror.leases import MirroredLease

# Loaded on first use (PEP 562): the CLI imports lockyard.mirror.kubeapi and leases without
# paying for the mirror itself and everything it imports.
_LAZY = {
    "KubeApiError": "kubeapi",
    "KubeClient": "kubeapi",
    "load_api_client": "kubeapi",
    "Holder": "lease_mirror",
    "LeaseMirror": "lease_mirror",
    "MirrorMetrics": "lease_mirror",
    "enable_lease_mirroring": "lease_mirror",
    "maybe_mirror": "lease_mirror",
    "mirror_of": "lease_mirror",
    "lease_name": "lease_names",
    "store_selector": "lease_names",
    "MirroredLease": "leases",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lockyard.mirror' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lockyard.mirror.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Holder",
    "KubeApiError",
    "KubeClient",
    "LeaseMirror",
    "MirrorMetrics",
    "MirroredLease",
    "enable_lease_mirroring",
    "lease_name",
    "load_api_client",
    "maybe_mirror",
    "mirror_of",
    "store_selector",
]
