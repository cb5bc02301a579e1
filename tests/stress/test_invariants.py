"""The stress checkers catch what they exist to catch: each is fed a broken history by hand.

A checker that never fails proves nothing, so every invariant gets one history it must flag
and, where the scenario allows the server to lose writes, must report as a loss instead.
"""

from __future__ import annotations

import asyncio

import pytest

from lockyard.errors import BackendConnectionError
from lockyard_dev.stress.invariants import (
    CasLedger,
    CounterLedger,
    DedupLedger,
    FencedResource,
    IndexModel,
    RegisterModel,
)
from lockyard_dev.stress.recorder import OpFailed, Recorder


def recorder(writes_may_be_lost: bool = False) -> Recorder:
    return Recorder(operation_timeout=1.0, slack=0.1, writes_may_be_lost=writes_may_be_lost)


def test_counters_flag_a_lost_and_a_phantom_increment() -> None:
    rec = recorder()
    ledger = CounterLedger(["c"])
    ledger.applied("c", 2, 2)
    ledger.applied("c", 3, 5)
    ledger.verify(rec, "c", 5)
    assert rec.violations == 0
    ledger.verify(rec, "c", 4)  # one unit lost
    assert rec.checks["counters"].violations == 1
    ledger.verify(rec, "c", 9)  # four units nobody added
    assert rec.checks["counters"].violations == 2
    ledger.ambiguous("c", 4)
    ledger.verify(rec, "c", 9)  # ... unless an unacknowledged increment of 4 explains them
    assert rec.checks["counters"].violations == 2


def test_cas_flags_two_winners_a_gap_and_a_torn_read() -> None:
    rec = recorder()
    ledger = CasLedger(["k"])
    ledger.created_by(rec, "k", "v1:init")
    ledger.won(rec, "k", 2, "v2:a")
    ledger.won(rec, "k", 3, "v3:a")
    ledger.verify(rec, "k", ("v3:a", 3))
    assert rec.violations == 0
    ledger.won(rec, "k", 3, "v3:b")  # a lost update
    assert rec.checks["cas"].violations == 1
    ledger.verify(rec, "k", ("v5:x", 5))  # versions 4 and 5 written by nobody
    assert rec.checks["cas"].violations >= 2
    before = rec.checks["cas"].violations
    ledger.observe(rec, "k", "v4:a", 3)
    assert rec.checks["cas"].violations == before + 1


def test_dedup_flags_two_winners_but_reports_them_as_a_loss_when_allowed() -> None:
    for lossy in (False, True):
        rec = recorder(writes_may_be_lost=lossy)
        ledger = DedupLedger()
        ledger.attempts["d"] = 3
        ledger.winners["d"] += ["a", "b"]
        ledger.verify(rec, "d", "b")
        assert rec.checks["dedup"].violations == (0 if lossy else 1)
        assert rec.checks["dedup"].loss_anomalies == (1 if lossy else 0)
        assert rec.lost_acknowledged["check_and_set wins"] == (1, 2)


def test_registers_flag_a_stale_read_and_scans_a_foreign_key() -> None:
    rec = recorder()
    model = RegisterModel()
    model.was_set("r1", "new", None, 0.0, 0.1)
    model.check_read(rec, "r1", ("old", None), 0.2, 0.3)
    assert rec.checks["registers"].violations == 1
    model.was_set("n:t:reg:a", "x", None, 0.0, 0.1)
    model.check_scan(rec, "n:t:reg:", "", [("n:t:reg:zzz", "?")], 0.2, 0.3)
    assert rec.checks["scans"].violations >= 1


def test_registers_expect_an_expired_key_to_be_gone() -> None:
    rec = recorder()
    model = RegisterModel()
    model.was_set("r", "v", 0.05, 10.0, 10.01)
    model.check_read(rec, "r", ("v", None), 10.02, 10.03)  # still live: fine
    model.check_read(rec, "r", ("v", None), 10.2, 10.21)  # long past its TTL
    assert rec.checks["registers"].violations == 1


def test_indexes_flag_a_key_that_is_not_due() -> None:
    rec = recorder()
    model = IndexModel({"n:t:idx:a": 10, "n:t:idx:b": 500})
    model.check_due(rec, "timeout", "n:t:idx:", 100, ["n:t:idx:a"])
    assert rec.violations == 0
    model.check_due(rec, "timeout", "n:t:idx:", 100, ["n:t:idx:a", "n:t:idx:b"])
    assert rec.checks["indexes"].violations == 1


def test_the_fenced_resource_flags_overlaps_stale_and_reused_tokens() -> None:
    rec = recorder()
    resource = FencedResource(rec, overlaps_expected=False)
    resource.enter("L", task=1, token=5, lease_s=10)
    resource.enter("L", task=2, token=6, lease_s=10)  # two holders at once
    assert resource.overlaps == 1
    resource.leave("L", 1)
    resource.leave("L", 2)
    resource.enter("L", task=3, token=4, lease_s=10)  # a token going backwards
    resource.leave("L", 3)
    resource.enter("L", task=4, token=6, lease_s=10)  # a token handed out twice
    assert rec.checks["fencing"].violations == 4
    assert resource.stale == 2

    lenient = FencedResource(recorder(), overlaps_expected=True)
    lenient.enter("L", task=1, token=2**40 + 1, lease_s=10)
    lenient.enter("L", task=2, token=7, lease_s=10)  # the old master's holder, after failover
    assert (lenient.overlaps, lenient.stale) == (1, 1)
    assert lenient.rec.violations == 0


async def test_a_non_state_error_and_a_slow_failure_are_violations() -> None:
    rec = recorder()

    async def broken() -> None:
        raise KeyError("n")

    with pytest.raises(OpFailed):
        await rec.call("increment", broken())
    assert rec.checks["errors"].violations == 1
    assert "not a StateError" in rec.messages[0]

    async def slow_failure() -> None:
        await asyncio.sleep(0.05)
        raise BackendConnectionError("refused")

    tight = Recorder(operation_timeout=0.01, slack=0.01, writes_may_be_lost=False)
    with pytest.raises(OpFailed):
        await tight.call("get", slow_failure())
    assert tight.checks["errors"].violations == 1
    assert "beyond its bound" in tight.messages[0]
