"""``make stress`` and ``make chaos`` end to end, briefly, through the entry points make uses.

The stress run drives memory:// for about two seconds and must report every operation kind and
no violation; the chaos run kills and restarts a real redis-server under load and must recover
on the same connections with no violation and no failure slower than its bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockyard_dev.chaos.cli import main as chaos_main
from lockyard_dev.stress.cli import main as stress_main
from lockyard_dev.stress.report import CHECKS
from lockyard_dev.stress.workload import OPERATIONS

STATE_ERRORS = {
    "BackendConnectionError",
    "BackendError",
    "OperationTimeoutError",
    "LockTimeoutError",
    "LockExpiredError",
    "LockLostError",
    "SerializationError",
}


def run(module: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", module, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_stress_on_memory_runs_every_operation_without_violation(tmp_path: Path) -> None:
    out = tmp_path / "stress.json"
    done = run(
        "lockyard_dev.stress",
        *("--backends", "memory", "--duration", "2", "--seed", "7", "--json", str(out)),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (figures,) = json.loads(out.read_text())["backends"]
    assert figures["backend"] == "memory"
    assert figures["violations"] == 0
    assert figures["tasks"] == 64
    ran = {op for op, stats in figures["operations"].items() if stats["ok"] > 0}
    assert set(OPERATIONS) <= ran, f"never ran: {sorted(set(OPERATIONS) - ran)}"
    covered = {name for name, check in figures["invariants"].items() if check["checked"]}
    assert set(CHECKS) - {"errors", "recovery"} <= covered
    assert figures["lock_holds"] > 0
    assert figures["lock_overlaps"] == 0
    # The tables went to stdout.
    assert "== memory:" in done.stdout
    assert "violations: 0" in done.stdout
    for title in CHECKS.values():
        assert title in done.stdout


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(420)  # above the run's own 300 s, so its message wins
def test_chaos_redis_kill_recovers_without_violation(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    done = run(
        "lockyard_dev.chaos",
        *("--scenarios", "redis-kill", "--tasks", "8", "--warmup", "1.5", "--outage", "1"),
        *("--after", "3", "--seed", "7", "--json", str(out)),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (scenario,) = json.loads(out.read_text())["scenarios"]
    assert scenario["scenario"] == "redis-kill"
    assert scenario["violations"] == 0
    assert scenario["recovered"] is True
    assert scenario["unrecovered"] == []
    assert scenario["failed"] > 0, "the kill was never felt"
    assert set(scenario["errors"]) <= STATE_ERRORS
    slowest = scenario["slowest_failure"]
    assert slowest["seconds"] <= slowest["bound_s"]
    assert scenario["ok_after_recovery"] > 0
    assert scenario["loss_anomalies"] == 0
    assert scenario["run"]["lost_acknowledged"] == {} or all(
        entry["lost"] == 0 for entry in scenario["run"]["lost_acknowledged"].values()
    )
    assert "redis-kill" in done.stdout


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (stress_main, ["--backends", "memory,cassandra"], "unknown backend 'cassandra'"),
        (stress_main, ["--duration", "0"], "argument --duration: '0' must be more than zero"),
        (stress_main, ["--tasks", "many"], "argument --tasks: 'many' is not a number"),
        (chaos_main, ["--scenarios", "zookeeper-kill"], "unknown scenario 'zookeeper-kill'"),
        (chaos_main, ["--outage", "-1"], "argument --outage: '-1' must be zero or more"),
    ],
)
def test_bad_flags_exit_2_naming_the_problem(
    main: object, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
