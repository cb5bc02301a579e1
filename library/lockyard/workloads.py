"""``connect_store``: open the StateStore a platform team declared, from inside a pod.

It joins two packages that do not know each other's callers: ``lockyard.kube`` finds and opens
the store, and ``lockyard.mirror`` (built on ``lockyard.kube``) mirrors its held locks as Leases
when the binding asks for it. Both are imported lazily, so ``import lockyard`` stays free of the
Kubernetes client.
"""

from __future__ import annotations

from lockyard.connection import Connection


async def connect_store(name: str, namespace: str | None = None) -> Connection:
    """Connect to the ``StateStore`` called ``name`` (in ``namespace``, default: the pod's own).

    Reads the binding mounted under ``$SERVICE_BINDING_ROOT/<name>`` when present, else asks
    the Kubernetes API for the store's binding Secret. Returns the same handle as ``connect``;
    when the binding says ``lease-mirroring: true``, its held locks are mirrored as Leases.
    """
    from lockyard.kube.connect_store import open_bound_store
    from lockyard.mirror.registry import maybe_mirror

    opened = await open_bound_store(name, namespace)
    # Never stops the workload: without credentials or the client, mirroring only warns.
    maybe_mirror(opened.connection, opened.binding, store_name=name, namespace=opened.namespace)
    return opened.connection
