"""The contended-lock goals judge fairness only where the contract promises a waiting order,
lockyard.sync is judged against the blocking peers where they run, and PostgreSQL's cycle against
the floor measured on the same server in the same pass; the cycle rate on moto is reported only."""

from __future__ import annotations

import pytest

from lockyard_dev.bench.durable import DURABLE_LOCKYARD
from lockyard_dev.bench.floor import DURABLE_FLOOR, FLOOR
from lockyard_dev.bench.goals import GoalCheck, _contended_goals, check_goals
from lockyard_dev.bench.results import LOCKYARD, Record, Results
from lockyard_dev.bench.stats import Spread
from lockyard_dev.bench.sync_peers import SYNC_PEER

WORKERS = 16


def _metrics(fairness: float) -> dict[str, Spread]:
    return {
        "wait_p99_ms": Spread(5.0, 4.0, 6.0),
        "fairness": Spread(fairness, fairness, fairness),
        "cycles": Spread(800, 800, 800),
        "violations": Spread(0, 0, 0),
    }


def _fairness_check(backend: str, fairness: float) -> tuple[str, str]:
    (check,) = [
        c for c in _contended_goals(backend, _metrics(fairness), WORKERS) if "share" in c.goal
    ]
    return check.status, check.detail


@pytest.mark.parametrize("backend", ["memory", "redis", "redis-cluster", "postgresql"])
def test_fifo_backends_are_judged_on_fairness(backend: str) -> None:
    assert _fairness_check(backend, 1.02)[0] == "met"
    assert _fairness_check(backend, 6.6)[0] == "missed"


def test_dynamodb_fairness_is_reported_not_judged() -> None:
    status, detail = _fairness_check("dynamodb", 6.6)
    assert status == "info"
    assert "max/min share 6.6" in detail
    assert "no queue of waiters" in detail


def _cycles(backend: str, subject: str, rate: float, pass_no: int = 0) -> Record:
    return Record(
        backend, "peer", subject, "lock_cycle", "uncontended", pass_no, {"ops_per_s": rate}
    )


def _sync_checks(backend: str, sync_rate: float) -> list[GoalCheck]:
    results = Results({"lock_workers": WORKERS}, {})
    results.add(_cycles(backend, "redis-py Lock (blocking)", 4_000))
    results.add(_cycles(backend, "python-redis-lock", 3_500))
    results.add(_cycles(backend, SYNC_PEER, sync_rate))
    contended = {"wait_p99_ms": 9.0, "fairness": 1.02, "cycles": 900, "violations": 0}
    results.add(Record(backend, "peer", SYNC_PEER, "lock_cycle", "contended", 0, contended))
    return [c for c in check_goals(results, frozenset()) if c.goal.startswith("lockyard.sync")]


def test_lockyard_sync_is_judged_against_the_best_blocking_peer_on_redis() -> None:
    met = {c.goal: c for c in _sync_checks("redis", 4_400)}
    best = met["lockyard.sync sequential lock cycle ≥ best peer"]
    assert best.status == "met"
    assert "vs redis-py Lock (blocking) 4,000 cycles/s (1.10x)" in best.detail
    assert met["lockyard.sync contended p99 wait ≤ 20 ms"].status == "met"
    assert met["lockyard.sync every worker's share within 2x"].status == "met"
    assert met["lockyard.sync no mutual-exclusion violation"].status == "met"
    (missed,) = [c for c in _sync_checks("redis", 2_600) if "sequential" in c.goal]
    assert missed.status == "missed"
    assert "(0.65x)" in missed.detail


def test_lockyard_sync_is_only_judged_where_its_blocking_peers_run() -> None:
    assert _sync_checks("postgresql", 100) == []


def _floor_results(durable: bool) -> Results:
    """Two passes of Lockyard's uncontended cycle beside the floor on each server."""
    results = Results({"lock_workers": WORKERS}, {})
    floor = {"upsert_sync_per_s": 6_000, "upsert_async_per_s": 6_000, "two_flush_per_s": 3_000}
    servers = [("lock", LOCKYARD, "floor", FLOOR, 2_400, 3_000)]
    if durable:
        servers.append(("floor", DURABLE_LOCKYARD, "floor", DURABLE_FLOOR, 1_900, 2_000))
    for pass_no in (0, 1):
        for section, subject, floor_section, floor_subject, mine, floor_rate in servers:
            # The second pass is slower on both sides: the goal compares within a pass.
            scale = 1.0 if pass_no == 0 else 0.5
            results.add(
                Record(
                    "postgresql",
                    section,
                    subject,
                    "lock_cycle",
                    "uncontended",
                    pass_no,
                    {"ops_per_s": mine * scale},
                )
            )
            results.add(
                Record(
                    "postgresql",
                    floor_section,
                    floor_subject,
                    "lock_cycle",
                    "uncontended",
                    pass_no,
                    {**floor, "ops_per_s": floor_rate * scale},
                )
            )
    return results


def test_the_floor_goal_is_judged_per_pass_on_each_server() -> None:
    checks = {c.goal: c for c in check_goals(_floor_results(durable=True), frozenset())}
    durable = checks["uncontended lock cycle ≥ 0.9x the durable floor (fsync=on)"]
    assert durable.status == "met"
    assert durable.detail.startswith("0.95x per pass (passes 0.95–0.95)")
    test_server = checks["uncontended lock cycle ≥ 0.9x the durable floor (fsync=off)"]
    assert test_server.status == "missed"
    assert test_server.detail.startswith("0.80x per pass")
    rate = checks["uncontended lock cycle ≥ 2,000 cycles/s"]
    assert (rate.status, rate.detail) == (
        "missed",  # the median of the test server's 2,400 and 1,200 cycles/s
        "1,800 cycles/s (the benchmark's server)",
    )
    # Without the fsync=on server (it did not start) its goal is left out, not judged.
    goals = {c.goal for c in check_goals(_floor_results(durable=False), frozenset())}
    assert "uncontended lock cycle ≥ 0.9x the durable floor (fsync=on)" not in goals
    assert "uncontended lock cycle ≥ 0.9x the durable floor (fsync=off)" in goals


def test_the_cycle_rate_on_moto_is_reported_not_judged() -> None:
    results = Results({"lock_workers": WORKERS}, {})
    for backend, rate in (("dynamodb", 80.0), ("redis", 1_500.0)):
        results.add(
            Record(backend, "lock", LOCKYARD, "lock_cycle", "uncontended", 0, {"ops_per_s": rate})
        )
    checks = {
        c.backend: c
        for c in check_goals(results, frozenset())
        if c.goal == "uncontended lock cycle ≥ 2,000 cycles/s"
    }
    assert checks["dynamodb"].status == "info"
    assert checks["dynamodb"].detail.endswith("(reported only: moto serves one request at a time)")
    assert checks["redis"].status == "missed"
