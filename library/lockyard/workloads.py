"""``connect_store``: open the StateStore a platform team declared, from inside a pod.

The Kubernetes client is imported only here, lazily, so ``import lockyard`` stays free of it.
"""

from __future__ import annotations

from lockyard.connection import Connection
from lockyard.errors import ConfigError


async def connect_store(name: str, namespace: str | None = None) -> Connection:
    """Connect to the ``StateStore`` called ``name`` (in ``namespace``, default: the pod's own).

    Reads the binding mounted under ``$SERVICE_BINDING_ROOT/<name>`` when present, else asks
    the Kubernetes API for the store's binding Secret. Returns the same handle as ``connect``.
    """
    try:
        from lockyard.kube.connect_store import open_store
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"connect_store needs the Python package {exc.name!r}: "
            "pip install 'lockyard[kubernetes]'"
        ) from exc
    return await open_store(name, namespace)
