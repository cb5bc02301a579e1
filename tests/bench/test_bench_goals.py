"""The contended-lock goals judge fairness only where the contract promises a waiting order."""

from __future__ import annotations

import pytest

from lockyard_dev.bench.goals import _contended_goals
from lockyard_dev.bench.stats import Spread

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
