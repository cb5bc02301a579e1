"""``make bench``'s mirroring-on scenario end to end on the test cluster, with tiny counts.

A smoke test, never a timed one: the run must measure lock cycles with mirroring on next to the
default's, time Leases appearing, and judge both mirroring goals in the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(420)  # above the run's own 300 s, so its message wins
def test_bench_measures_lease_mirroring(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "lockyard_dev.bench", "--url", "memory://", "--iterations", "20"]
    argv += ["--passes", "1", "--lock-cycles", "32", "--max-seconds", "2", "--peers", "none"]
    argv += ["--ops", "get", "--scenarios", "default,mirroring-on", "--out", str(out)]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "LOCKYARD_BENCH_NAMESPACE": namespace}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    assert (out / "chart.png").stat().st_size > 0  # the probe's record is no lock cycle to draw
    report = (out / "report.md").read_text()
    assert "### Scenarios against the default" in report
    assert "| lockyard[mirroring-on] |" in report
    assert "Lease mirroring keeps ≥ 0.95x the lock-cycle rate" in report
    assert "Lease visible ≤ 1000 ms after acquisition (p99)" in report
    results = json.loads((out / "results.json").read_text())
    assert results["notes"] == [], results["notes"]  # nothing failed or was skipped

    probe = next(f for f in results["figures"] if f["op"] == "probe")
    assert probe["subject"] == "lockyard[mirroring-on]"
    assert probe["metrics"]["samples"]["median"] == 20
    # Every sample saw its Lease (a Lease never seen counts as the 10 s limit).
    assert 0 < probe["metrics"]["visible_p99_ms"]["high"] < 10_000


def test_mirroring_scenario_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "lockyard_dev.bench", "--url", "memory://", "--iterations", "5"]
    argv += ["--passes", "1", "--lock-cycles", "16", "--peers", "none", "--ops", "get"]
    argv += ["--scenarios", "mirroring-on", "--no-chart", "--out", str(tmp_path / "r")]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "needs a cluster" in done.stderr
    assert "make bench" in done.stderr
