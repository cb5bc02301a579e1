"""``make chaos``'s ``operator-pod-kill`` end to end: the leading operator pod's container is
SIGKILLed from the host again and again while the operator (``kubectl apply -k deploy/``: two
replicas on two nodes) reconciles a burst of StateStores; nothing may be left half-written. The
bounds asserted are the scenario's own (recovery within its deadlines), never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STORES = 4
KILLS = 2


@pytest.mark.timeout(1020)  # above the run's own 900 s, so its message wins
def test_operator_pod_kill_recovers_without_violation(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    argv = [
        sys.executable, "-m", "lockyard_dev.chaos", "--scenarios", "operator-pod-kill",
        "--stores", str(STORES), "--kills", str(KILLS), "--seed", "7", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["skipped"] == {}
    (kill,) = figures["scenarios"]
    assert kill["scenario"] == "operator-pod-kill"
    assert kill["violations"] == 0, kill["messages"]
    assert kill["recovered"] is True
    assert all(c["violations"] == 0 for c in kill["checks"].values())
    assert kill["attempted"] == STORES + 3  # the burst, late's creation, steady's update, victim
    assert kill["failed"] == 0
    assert len(kill["figures"]["kills"]) == KILLS
    # Each kill was of a leader that had done work: a store Ready since the wave before.
    assert all(k["ready"] >= 1 for k in kill["figures"]["kills"]), kill["figures"]["kills"]
    assert kill["checks"]["binding Secret complete, owned and working"]["checked"] == STORES + 2
    assert None not in kill["figures"]["healthy_after_start_s"], "a new leader never came"
    assert "== operator-pod-kill:" in done.stdout
    figures_ = kill["figures"]
    print(
        f"operator-pod-kill: new leader {figures_['healthy_after_start_s']} s after each kill, "
        f"down {figures_['operator_down_s']} s in all, recovered {kill['recover_s']} s after "
        "the last start"
    )
