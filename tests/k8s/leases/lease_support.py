"""Helpers the Lease tests share (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from lockyard.kube import KubeClient
from lockyard.kube.paths import leases_path
from lockyard.mirror.lease_names import store_selector

STORE = "orders"


class Cluster:
    """Small async helpers over the admin API for one test's namespace."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def leases(self, store: str = STORE, namespace: str | None = None) -> list[Any]:
        """The mirrored Lease objects of ``store``."""
        path = leases_path(namespace or self.namespace)
        listed = await asyncio.to_thread(
            self.kube.get, path, {"labelSelector": store_selector(store)}
        )
        return list(listed.get("items") or [])

    async def eventually(
        self, probe: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.1
    ) -> Any:
        """Await ``probe()`` (a coroutine function) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = await probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(interval)
