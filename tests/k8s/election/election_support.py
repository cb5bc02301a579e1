"""Helpers of the Lease election tests."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from lockyard.kube.api import KubeApi
from lockyard.kube.lease_election import ElectionTimings
from lockyard.kube.paths import leases_path
from lockyard_dev.cluster.controlplane import ControlPlane

#: ``await connect()`` / ``await connect(kubeconfig)``: an API client of its own.
Connect = Callable[..., Awaitable[KubeApi]]

#: Short timings, as the operator's tests pass them by flag: 4 s lease, 3 s renew deadline,
#: a try every 0.5 s.
TIMINGS = ElectionTimings(lease_duration_s=4, renew_deadline_s=3.0, retry_period_s=0.5)


def apiserver_port(plane: ControlPlane) -> int:
    return int(plane.server.rsplit(":", 1)[1])


def proxied_kubeconfig(plane: ControlPlane, port: int, path: Path) -> Path:
    """The admin kubeconfig, but through a proxy on ``port`` (TLS passes through: the serving
    certificate names 127.0.0.1)."""
    config = yaml.safe_load(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


async def round_trip_s(api: KubeApi, namespace: str, samples: int = 5) -> float:
    """The slowest of a few reads of a Lease: this machine's API speed right now."""
    slowest = 0.0
    for _ in range(samples):
        started = time.monotonic()
        await api.get_or_none(leases_path(namespace, "speed-probe"))
        slowest = max(slowest, time.monotonic() - started)
    return slowest


def slack_s(round_trip: float) -> float:
    """Room for scheduling and a few API calls on a loaded machine, from its measured speed."""
    return 0.5 + 6 * round_trip
