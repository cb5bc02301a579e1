"""``make bench`` end to end on memory://, with tiny counts: a smoke test, never a timed test.

The benchmark runs through the entry point ``make bench`` uses (``python -m lockyard_dev.bench``,
as a subprocess) and must write the report, the JSON figures and the chart with every section.
Flag validation is checked in-process through ``main()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockyard_dev.bench.cli import main
from lockyard_dev.bench.store_ops import STORE_OP_NAMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(420)  # above the run's own 300 s, so its message wins
def test_bench_writes_report_chart_and_figures_on_memory(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "lockyard_dev.bench", "--url", "memory://", "--iterations", "20"]
    argv += ["--passes", "2", "--lock-cycles", "48", "--max-seconds", "2", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    report = (out / "report.md").read_text()
    for heading in (
        "# Lockyard benchmark",
        "## Goals",
        "## memory",
        "### Store operations: sequential on one connection, and 64 concurrent tasks",
        "### Lock cycles: uncontended, and 16 workers on one name",
        "## Notes",
        "## How it was measured",
    ):
        assert heading in report, heading
    for op in STORE_OP_NAMES:
        assert f"| {op} |" in report, op
    assert "| lockyard |" in report
    assert "| asyncio.Lock (in-process reference) |" in report
    assert "no mutual-exclusion violation. 0 violations" in report
    assert "![ratios and lock-cycle throughput](chart.png)" in report

    assert (out / "chart.png").read_bytes().startswith(PNG_MAGIC)
    figures = json.loads((out / "results.json").read_text())
    measured = {(f["section"], f["op"], f["mode"]) for f in figures["figures"]}
    assert {
        ("store", op, mode) for op in STORE_OP_NAMES for mode in ("sequential", "concurrent")
    } <= measured
    assert ("lock", "lock_cycle", "contended") in measured
    assert ("peer", "lock_cycle", "uncontended") in measured

    # The aligned terminal tables went to stdout; progress went to stderr.
    assert "store operations" in done.stdout
    assert "lock cycles" in done.stdout
    assert "pass 2/2" in done.stderr


def test_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--iterations" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--iterations", "0"], "argument --iterations: '0' must be at least 1"),
        (["--passes", "two"], "argument --passes: 'two' is not a whole number"),
        (["--max-seconds", "0"], "argument --max-seconds: '0' must be more than zero"),
        (["--hold-ms", "-1"], "argument --hold-ms: '-1' must be a finite number, zero or more"),
        (["--backends", "memory,cassandra"], "unknown backend 'cassandra'; known: memory,"),
        (["--peers", "zookeeper"], "unknown peer 'zookeeper'; known: asyncio-lock,"),
        (["--ops", "get,fetch"], "unknown operation 'fetch'; known: check_and_set,"),
        (["--url", "mongodb://x"], "unknown URL scheme 'mongodb://'"),
        (["--url", "memory://", "--backends", "redis"], "not allowed with argument"),
    ],
)
def test_bad_flags_exit_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
