"""Every held lock visible in the cluster: Lockyard locks mirrored as Kubernetes Leases.

``enable_lease_mirroring(connection, store, namespace)`` attaches a :class:`LeaseMirror` to a
handle; ``maybe_mirror(connection, binding, ...)`` does so when the store's binding asks for it.
Lease names, labels and annotations are defined in :mod:`lockyard.mirror.lease_names`; reading
Leases back is :mod:`lockyard.mirror.leases`. Needs the ``kubernetes`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard._lazy import lazy_exports

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
    "KubeApiError": "lockyard.mirror.kubeapi",
    "KubeClient": "lockyard.mirror.kubeapi",
    "load_api_client": "lockyard.mirror.kubeapi",
    "Holder": "lockyard.mirror.lease_mirror",
    "LeaseMirror": "lockyard.mirror.lease_mirror",
    "MirrorMetrics": "lockyard.mirror.lease_mirror",
    "enable_lease_mirroring": "lockyard.mirror.lease_mirror",
    "maybe_mirror": "lockyard.mirror.lease_mirror",
    "mirror_of": "lockyard.mirror.lease_mirror",
    "lease_name": "lockyard.mirror.lease_names",
    "store_selector": "lockyard.mirror.lease_names",
    "MirroredLease": "lockyard.mirror.leases",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

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
