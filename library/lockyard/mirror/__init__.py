"""Every held lock visible in the cluster: Lockyard locks mirrored as Kubernetes Leases.

``enable_lease_mirroring(connection, store, namespace)`` attaches a :class:`LeaseMirror` to a
handle; ``maybe_mirror(connection, binding, ...)`` does so when the store's binding asks for it
(:mod:`~lockyard.mirror.registry`). The mirror paces lock events (:mod:`~lockyard.mirror.
lease_mirror`) and writes each lock's Lease through :mod:`~lockyard.mirror.lease_writer`, which
the operator's reaper reuses. Lease names, labels and annotations: :mod:`~lockyard.mirror.
lease_names`; reading Leases back: :mod:`~lockyard.mirror.leases`. Built on ``lockyard.kube``
(which never imports this package); API calls need the ``kubernetes`` extra. ``KubeApiError``,
``KubeClient`` and ``load_api_client`` are ``lockyard.kube``'s, also importable from here as they
were before the two clients became one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard._lazy import lazy_exports

if TYPE_CHECKING:
    from lockyard.kube.client import KubeClient
    from lockyard.kube.config import load_api_client
    from lockyard.kube.errors import KubeApiError
    from lockyard.mirror.holder import Holder
    from lockyard.mirror.lease_mirror import LeaseMirror, MirrorMetrics
    from lockyard.mirror.lease_names import lease_name, store_selector
    from lockyard.mirror.lease_writer import LeaseWriter
    from lockyard.mirror.leases import MirroredLease
    from lockyard.mirror.registry import enable_lease_mirroring, maybe_mirror, mirror_of

# Loaded on first use (PEP 562): the CLI reads Leases without paying for the mirror itself.
_LAZY = {
    "KubeClient": "lockyard.kube.client",
    "load_api_client": "lockyard.kube.config",
    "KubeApiError": "lockyard.kube.errors",
    "Holder": "lockyard.mirror.holder",
    "LeaseMirror": "lockyard.mirror.lease_mirror",
    "MirrorMetrics": "lockyard.mirror.lease_mirror",
    "lease_name": "lockyard.mirror.lease_names",
    "store_selector": "lockyard.mirror.lease_names",
    "LeaseWriter": "lockyard.mirror.lease_writer",
    "MirroredLease": "lockyard.mirror.leases",
    "enable_lease_mirroring": "lockyard.mirror.registry",
    "maybe_mirror": "lockyard.mirror.registry",
    "mirror_of": "lockyard.mirror.registry",
}

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

__all__ = [
    "Holder",
    "KubeApiError",
    "KubeClient",
    "LeaseMirror",
    "LeaseWriter",
    "MirrorMetrics",
    "MirroredLease",
    "enable_lease_mirroring",
    "lease_name",
    "load_api_client",
    "maybe_mirror",
    "mirror_of",
    "store_selector",
]
