"""Helpers the Lease tests share (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockyard.config import parse_url
from lockyard.kube import KubeClient
from lockyard.kube.binding import binding_data
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import leases_path, secrets_path
from lockyard.mirror.lease_names import store_selector

STORE = "orders"


async def run_process(
    command: list[str], *, env: dict[str, str], stdin: int | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run ``command`` to its end in a worker thread: exit code, stdout, stderr.

    Not asyncio's subprocess transport: that transport is closed by a callback the loop runs
    after the process ends, and a test that returns at once closes its loop first; the
    transport is then collected later as unclosed (a ResourceWarning, an error in this suite,
    failing whichever test happens to run then).
    """
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


class Cli:
    """Runs ``python -m lockyard.cli.main`` with the test cluster's kubeconfig, as a user does."""

    def __init__(self, kubeconfig: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.env.pop("NO_COLOR", None)

    async def __call__(self, *args: str, stdin: int | None = None) -> tuple[int, str, str]:
        command = [sys.executable, "-m", "lockyard.cli.main", *args]
        return await run_process(command, env=self.env, stdin=stdin)


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


async def publish_binding(kube: KubeClient, namespace: str, store: str, url: str) -> None:
    """The binding Secret the operator would publish for ``store`` (``url``, mirroring on)."""
    data = binding_data(parse_url(url), files={}, default_ttl_seconds=30, lease_mirroring=True)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": store_object_name(store)},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    await asyncio.to_thread(kube.create, secrets_path(namespace), secret)
