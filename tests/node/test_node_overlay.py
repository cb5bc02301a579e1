"""The test overlay of ``deploy/`` (``lockyard_dev.node.deploy.write_overlay``): only the image,
unless the shipped ports are taken on this host; then the ports move, everywhere they appear."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from lockyard_dev.cluster.controlplane import find_binaries
from lockyard_dev.node import OPERATOR_REF
from lockyard_dev.node.deploy import ports_in_use, write_overlay
from lockyard_dev.repository import repository_root

SOURCE = repository_root()


def _deployment(overlay: Path) -> dict[str, Any]:
    rendered = subprocess.run(
        [str(find_binaries() / "kubectl"), "kustomize", str(overlay)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, Any] = next(
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"
    )
    return found


def test_overlay_swaps_only_the_image(tmp_path: Path) -> None:
    shipped = yaml.safe_load((SOURCE / "deploy" / "deployment.yaml").read_text())
    deployment = _deployment(write_overlay(SOURCE, tmp_path))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == OPERATOR_REF
    original = shipped["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == original["args"]
    assert "--bind-address=$(POD_IP)" in container["args"]
    assert container["ports"] == original["ports"]


def test_overlay_moves_the_ports_everywhere(tmp_path: Path) -> None:
    deployment = _deployment(write_overlay(SOURCE, tmp_path, (18180, 18181)))
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert "--metrics-port=18180" in container["args"]
    assert "--health-port=18181" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 18180,
        "health": 18181,
    }
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "18180"
    # The probes name the port, so they follow it.
    assert container["livenessProbe"]["httpGet"]["port"] == "health"


def test_ports_in_use_sees_a_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert ports_in_use(["127.0.0.1", "127.0.0.2"], (port,))
        assert not ports_in_use(["127.0.0.3"], (port,))
