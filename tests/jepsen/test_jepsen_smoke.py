"""A short ``make jepsen``: Redis behind toxiproxy, replies delayed past the operation timeout.

Three worker processes record a few hundred operations; porcupine checks the history. The run
must be linearizable with some outcomes unknown (the fault bit), and the checker must reject
the same history once one acknowledged read in it returns a value nobody wrote, so the verdict
is the checker's, not a formality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockyard_dev.jepsen.checker import ILLEGAL, OK, check_history
from lockyard_dev.jepsen.run import RunOptions, run_backend
from lockyard_dev.jepsen.scenarios import SCENARIOS

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]


def _falsify_a_read(history: Path, into: Path) -> str:
    """Copy ``history`` with one acknowledged ``get`` returning a value no one ever wrote."""
    events = [json.loads(line) for line in history.read_text().splitlines()]
    calls = {e["id"]: e for e in events if e["type"] == "invoke"}
    for event in events:
        call = calls.get(event.get("id", ""))
        if event["type"] == "ok" and call is not None and call["f"] == "get":
            event["result"]["value"] = "never-written"
            into.write_text("".join(json.dumps(e) + "\n" for e in events))
            return str(call["key"])
    raise AssertionError("the run acknowledged no read")


def test_redis_under_latency_is_linearizable_and_the_checker_bites(tmp_path: Path) -> None:
    options = RunOptions(duration_s=5.0, workers=3, processes=2, rate=90.0, op_timeout_s=0.5)
    [result] = list(run_backend("redis", [SCENARIOS["latency"]], options, tmp_path))

    assert result.worker_exits == [0, 0, 0]
    assert result.problems == []
    assert result.verdict.verdict == OK, [v.text for v in result.verdict.violations]
    # Enough history for the checks below to mean something; not a rate (the machine's load
    # sets the rate: 450 operations were offered, a loaded run recorded 132).
    assert result.verdict.operations >= 50
    # Replies delayed by 1.5 operation timeouts: some outcomes stayed unknown.
    assert result.verdict.unknown_outcomes > 0
    assert result.checks.tally["errors"].get("OperationTimeoutError", 0) > 0
    assert result.checks.holds > 0
    assert result.checks.fenced_writes > 0

    history = Path(result.folder) / "history.jsonl"
    broken = tmp_path / "falsified.jsonl"
    key = _falsify_a_read(history, broken)
    verdict = check_history(broken, tmp_path / "falsified")
    assert verdict.verdict == ILLEGAL
    [violation] = verdict.violations
    assert violation.key == key
    assert "never-written" in violation.text
    assert violation.html is not None
    assert Path(violation.html).stat().st_size > 0
