"""The contended-lock goals judge fairness only where the contract promises a waiting order, and
lockyard.sync is judged against the blocking peers where they run."""

from __future__ import annotations

import pytest

from lockyard_dev.bench.goals import GoalCheck, _contended_goals, check_goals
from lockyard_dev.bench.results import Record, Results
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
