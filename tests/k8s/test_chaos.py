"""``make chaos``'s Kubernetes scenarios end to end, briefly, through the entry point make uses.

One run of ``python -m lockyard_dev.chaos`` (one control plane of its own) stops
kube-apiserver under the operator and lease-mirrored workloads, then kills the operator
mid-reconcile; both must recover with no violation. The bounds asserted are the scenarios' own
(recovery within their deadlines, Leases stale no longer than TTL + 10 s), never a speed.

The operator runs as a host process here: this needs only the control plane (no root, no
cgroups, no kubelet), and a process scoped to the scenario's namespace with its own ports is
killed and restarted at the exact moment chosen, with no crash-loop back-off in between. The
same scenario with the operator as the Deployment's pods on a node, ``operator-pod-kill``, runs
in tests/node/test_node_chaos.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockyard_dev.chaos.cli import build_parser
from lockyard_dev.chaos.cli import main as chaos_main
from lockyard_dev.chaos.scenarios import SCENARIOS

STORES = 6
KILLS = 2


def by_name(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {scenario["scenario"]: scenario for scenario in figures["scenarios"]}


@pytest.mark.k8s
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1020)  # above the run's own 900 s, so its message wins
def test_apiserver_restart_and_operator_kill_recover_without_violation(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    argv = [
        sys.executable, "-m", "lockyard_dev.chaos",
        "--scenarios", "apiserver-restart,operator-kill",
        "--tasks", "8", "--warmup", "1.5", "--outage", "1", "--after", "3",
        "--stores", str(STORES), "--kills", str(KILLS), "--seed", "7", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["skipped"] == {}
    scenarios = by_name(figures)
    assert set(scenarios) == {"apiserver-restart", "operator-kill"}
    for name, scenario in scenarios.items():
        assert scenario["violations"] == 0, (name, scenario["messages"])
        assert scenario["recovered"] is True, name
        assert scenario["recover_s"] is not None, name
        assert all(c["violations"] == 0 for c in scenario["checks"].values()), name

    api = scenarios["apiserver-restart"]
    assert api["downtime_s"] >= 1.0  # at least the outage asked for
    locks = api["figures"]["lock_operations"]
    assert locks["during"]["attempted"] > 0, "no lock operation ran while the API was down"
    assert locks["during"]["failed"] == 0
    leases = api["figures"]["leases"]
    assert leases["mirror_failed_during_outage"] > 0, "the mirrors never felt the outage"
    assert leases["stale_beyond_bound"] == 0
    assert leases["duplicates"] == 0
    assert api["figures"]["mirror_catch_up_s"] is not None
    assert api["figures"]["operator_recovery_s"] is not None
    assert api["checks"]["workload: one holder at a time, tokens rise"]["checked"] > 0

    kill = scenarios["operator-kill"]
    assert kill["attempted"] == STORES + 3  # the burst, late's creation, steady's update, victim
    assert kill["failed"] == 0
    assert len(kill["figures"]["kills"]) == KILLS
    assert kill["checks"]["binding Secret complete, owned and working"]["checked"] == STORES + 2

    # The reports and both summaries went to stdout.
    assert "== apiserver-restart:" in done.stdout
    assert "== operator-kill:" in done.stdout
    assert "recover s" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenarios", "etcd-kill"], "unknown scenario 'etcd-kill'"),
        (["--stores", "0"], "argument --stores: '0' must be more than zero"),
        (["--kills", "x"], "argument --kills: 'x' is not a number"),
    ],
)
def test_bad_flags_exit_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        chaos_main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_takes_both_kinds_of_scenario() -> None:
    args = build_parser().parse_args([])
    assert args.scenarios == [*SCENARIOS, "apiserver-restart", "operator-kill", "operator-pod-kill"]
    chosen = build_parser().parse_args(["--scenarios", "operator-kill,redis-kill"]).scenarios
    assert chosen == ["operator-kill", "redis-kill"]
