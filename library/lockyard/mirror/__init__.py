"""Every held lock visible in the cluster: Lockyard locks mirrored as Kubernetes Leases.

``enable_lease_mirroring(connection, store, namespace)`` attaches a :class:`LeaseMirror` to a
handle; ``maybe_mirror(connection, binding, ...)`` does so when the store's binding asks for it.
Lease names, labels and annotations are defined in :mod:`lockyard.mirror.lease_names`; reading
Leases back is :mod:`lockyard.mirror.leases`. Needs the ``kubernetes`` extra.
"""

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
