"""Conditions keep their transition time until their status changes; restarts keep it too."""

from __future__ import annotations

from lockyard.guarantees import Guarantees
from lockyard_operator import reasons
from lockyard_operator.status import StatusBook


def test_transition_time_moves_only_with_the_status() -> None:
    book = StatusBook()
    assert book.set(reasons.READY, False, reasons.SECRET_NOT_FOUND, "missing", 1)
    first = book.conditions[reasons.READY].last_transition_time
    book.conditions[reasons.READY] = book.conditions[reasons.READY].model_copy(
        update={"last_transition_time": "2000-01-01T00:00:00Z"}
    )
    assert not book.set(reasons.READY, False, reasons.BACKEND_UNREACHABLE, "down", 2)
    condition = book.conditions[reasons.READY]
    assert condition.last_transition_time == "2000-01-01T00:00:00Z"
    assert (condition.reason, condition.observed_generation) == (reasons.BACKEND_UNREACHABLE, 2)
    assert book.set(reasons.READY, True, reasons.RECONCILED, "ok", 2)
    assert book.conditions[reasons.READY].last_transition_time >= first


def test_seeding_adopts_an_existing_status_once() -> None:
    book = StatusBook()
    book.set(reasons.READY, True, reasons.RECONCILED, "ok", 3)
    book.set_guarantees(Guarantees("a", "b", "c", "d", "e"))
    book.locks_held, book.binding, book.observed_generation = 2, "lockyard-store-x", 3
    written = book.patch()["status"]

    restarted = StatusBook()
    restarted.seed(written)
    assert restarted.patch()["status"] == written
    restarted.seed({"conditions": []})  # a second seed is ignored
    assert restarted.is_true(reasons.READY)


def test_patch_orders_conditions_and_clears_stale_fields() -> None:
    book = StatusBook()
    book.set(reasons.BINDING_PUBLISHED, True, reasons.PUBLISHED, "", 1)
    book.set(reasons.READY, True, reasons.RECONCILED, "", 1)
    status = book.patch()["status"]
    assert [c["type"] for c in status["conditions"]] == [
        reasons.READY,
        reasons.BINDING_PUBLISHED,
    ]
    assert status["backend"] is None, "null in a merge patch removes a stale value"
    assert "observedGeneration" in status["conditions"][0]
