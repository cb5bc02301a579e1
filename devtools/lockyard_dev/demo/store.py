"""The StateStore the demo applies, on the node and with host processes alike."""

from __future__ import annotations

from typing import Any

NAMESPACE = "lockyard-demo"
STORE = "orders"
#: Said when the store is applied.
APPLYING = f"applying StateStore {NAMESPACE}/{STORE} (Redis, lease mirroring on)"


def demo_store(redis_port: int) -> dict[str, Any]:
    """The demo's StateStore: the demo's Redis on loopback, Lease mirroring on."""
    return {
        "apiVersion": "lockyard.dev/v1alpha1",
        "kind": "StateStore",
        "metadata": {"name": STORE, "namespace": NAMESPACE},
        "spec": {
            "redis": {"host": "127.0.0.1", "port": redis_port},
            "locks": {"defaultTtlSeconds": 10, "leaseMirroring": True},
            "probeIntervalSeconds": 5,
        },
    }
