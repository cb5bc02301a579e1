"""The ``elections`` bench probe measures hand-overs and observe latency (memory backend)."""

from __future__ import annotations

import lockyard
from lockyard_dev.bench.elections import probe
from lockyard_dev.bench.scenarios import by_name


async def test_the_elections_probe_reports_every_measurement() -> None:
    async with lockyard.connect("memory://?prefix=bench-elections") as ly:
        metrics = await probe(ly)
    for label in ("resign", "killed_past_lease", "observe"):
        p50, p99 = metrics[f"{label}_p50_ms"], metrics[f"{label}_p99_ms"]
        assert 0 <= p50 <= p99, (label, p50, p99)
    # In-process signals: a resign hands over, and an observer hears of it, within a few ms;
    # a dead leader is replaced soon after its lease (the loaded machine gets 0.2 s).
    assert metrics["resign_p50_ms"] < 50
    assert metrics["observe_p50_ms"] < 50
    assert metrics["killed_past_lease_p99_ms"] < 250


def test_the_elections_scenario_is_registered() -> None:
    (scenario,) = by_name(["elections"])
    assert scenario.probe is not None
    assert not scenario.store_ops
