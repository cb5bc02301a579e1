"""The audit check itself (``term_audit.check_terms``) on hand-made writes: no server."""

from __future__ import annotations

from term_audit import Stop, TermReport, Timings, Write, check_terms

from lockyard.kube.leader_record import LeaderRecord

NAMESPACE, LEASE = "ns", "lockyard-operator"
LEASE_S, RENEW_S = 6.0, 3.0


def renewal(identity: str, at: float, rv: int) -> Write:
    record = LeaderRecord(identity, int(LEASE_S), 0.0, at, 0)
    return Write(identity, "update", "leases", NAMESPACE, LEASE, at, at + 0.01, 200, rv, record)


def status_write(identity: str, at: float, rv: int) -> Write:
    return Write(
        identity, "patch", "statestores/status", NAMESPACE, "one", at, at + 0.01, 200, rv, None
    )


def audit(writes: list[Write], stops: dict[str, list[Stop]] | None = None) -> TermReport:
    """Audit ``writes`` with replicas stopped over ``stops`` and 0.5 s of grace after a resume."""
    timings = Timings(LEASE_S, RENEW_S, stops or {}, resume_grace_s=0.5)
    return check_terms(writes, NAMESPACE, LEASE, timings)


def test_a_write_within_the_lease_of_its_last_renewal_passes() -> None:
    writes = [renewal("a", 100.0, 1), status_write("a", 105.0, 2)]
    report = audit(writes)
    assert (report.violations, report.late_receipts) == ([], [])
    assert report.latest_after_renewal_s == 5.0


def test_a_write_past_the_lease_of_a_running_replica_is_a_violation() -> None:
    writes = [renewal("a", 100.0, 1), status_write("a", 108.1, 2)]
    report = audit(writes)
    assert len(report.violations) == 1
    assert "8.100s after its replica's last Lease write" in report.violations[0]


def test_an_in_flight_write_finished_as_its_stopped_replica_resumes_is_a_late_receipt() -> None:
    # Stopped 0.2 s after the renewal (its gate open until 103.01), continued at 108.0: the
    # write the stop caught between gate and socket arrives 0.1 s after the SIGCONT.
    writes = [renewal("a", 100.0, 1), status_write("a", 108.1, 2)]
    report = audit(writes, {"a": [(100.2, 108.0)]})
    assert report.violations == []
    assert len(report.late_receipts) == 1
    assert "+0.100s from its SIGCONT" in report.late_receipts[0]


def test_a_write_long_after_the_resume_is_a_violation() -> None:
    writes = [renewal("a", 100.0, 1), status_write("a", 109.0, 2)]
    report = audit(writes, {"a": [(100.2, 108.0)]})
    assert len(report.violations) == 1
    assert report.late_receipts == []


def test_a_stop_after_the_gate_closed_excuses_nothing() -> None:
    writes = [renewal("a", 100.0, 1), status_write("a", 107.0, 2)]
    report = audit(writes, {"a": [(104.0, 108.0)]})
    assert len(report.violations) == 1


def test_a_write_landing_in_the_next_holders_term_is_a_violation() -> None:
    writes = [
        renewal("a", 100.0, 1),
        renewal("b", 107.0, 2),
        status_write("a", 108.1, 3),
    ]
    report = audit(writes, {"a": [(100.2, 108.0)]})
    assert [t.holder for t in report.terms] == ["a", "b"]
    assert len(report.violations) == 1
    assert "landed in term #0 of b" in report.violations[0]
