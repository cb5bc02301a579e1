"""Who wrote what, in whose term: the API server's audit log read back.

The control plane logs every write the operator's ServiceAccount makes
(``ControlPlane.audit_log``), with the replica in the User-Agent
(``lockyard-operator/V (IDENTITY)``), the server's receive and completion times, and the object
written. Every object write gets its ``resourceVersion`` from etcd's one revision counter, so
the writes to the election Lease and all other writes fall into one total order.

:func:`check_terms` cuts that order into terms at each change of ``holderIdentity`` and reports
as a violation:

- a successful write by a replica outside its own term (ordered by ``resourceVersion``; for
  Secrets, whose audit entries carry no object, by server time, ambiguity counting against it);
- any write (successful or not) received ``leaseDurationSeconds`` or more after that replica's
  last Lease write was received, i.e. when a standby could already have taken the Lease;
  except a write received while its replica was SIGSTOPped, or just after it was continued,
  when the stop came before the replica's write gate closed (its renew deadline after that
  last Lease write completed): a stopped process sends nothing, and a continued one past its
  deadline sends nothing new (its gate ends it first), so that write left through an open gate
  and only its receipt was late (the API server, starved of CPU, read it seconds later, or the
  stop caught a worker thread between its gate and its socket: it finishes the send as it
  resumes). Such writes are counted (``late_receipts``), not flagged: the renew deadline is the
  last moment the operator can keep, the margin to the lease is what covers the way to the
  server (docs/operator.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockyard.kube.leader_record import LeaderRecord

_AGENT = re.compile(r"^lockyard-operator/\S+ \((?P<identity>[^)]+)\)")


def _time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Write:
    identity: str
    verb: str
    resource: str
    namespace: str
    name: str
    received: float
    completed: float
    code: int
    resource_version: int | None
    #: For a write to a Lease: the record it wrote.
    record: LeaderRecord | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return (
            f"{self.identity} {self.verb} {self.resource} {self.namespace}/{self.name} "
            f"-> {self.code} rv={self.resource_version}"
        )


def _object_rv(obj: Any) -> int | None:
    if not isinstance(obj, dict):
        return None
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _parse(event: dict[str, Any]) -> Write | None:
    match = _AGENT.match(event.get("userAgent") or "")
    if match is None or event.get("stage") != "ResponseComplete":
        return None
    ref = event.get("objectRef") or {}
    response, request = event.get("responseObject"), event.get("requestObject")
    resource = str(ref.get("resource") or "")
    if ref.get("subresource"):
        resource += "/" + str(ref["subresource"])
    name = ref.get("name") or ((request or {}).get("metadata") or {}).get("name") or ""
    record = None
    if resource == "leases" and isinstance(request, dict) and "spec" in request:
        record = LeaderRecord.from_spec(request["spec"])
    return Write(
        identity=match["identity"],
        verb=str(event.get("verb")),
        resource=resource,
        namespace=str(ref.get("namespace") or ""),
        name=str(name),
        received=_time(event["requestReceivedTimestamp"]),
        completed=_time(event["stageTimestamp"]),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        resource_version=_object_rv(response),
        record=record,
    )


#: How every audit event line begins (a core Event inside a request body names apiVersion v1).
_EVENT_START = '{"kind":"Event","apiVersion":"audit.k8s.io/v1"'


def audit_events(text: str) -> tuple[list[dict[str, Any]], int]:
    """The audit events in ``text``, and how many were torn.

    An API server killed while writing (the restart tests kill it) leaves a partial event with
    no newline, which the next server's first event continues on the same line: the partial
    one is counted and skipped, the events after it are read."""
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    torn = 0
    for line in text.splitlines():
        position = 0
        while position < len(line):
            try:
                event, position = decoder.raw_decode(line, position)
            except json.JSONDecodeError:
                torn += 1
                position = line.find(_EVENT_START, position + 1)
                if position < 0:
                    break
                continue
            events.append(event)
    return events, torn


def read_writes(audit_log: Path, identities: Iterable[str], namespace: str) -> list[Write]:
    """The writes of the replicas named ``identities`` in ``namespace`` (each test has its own),
    in the order the server logged them."""
    wanted = set(identities)
    writes = []
    events, torn = audit_events(audit_log.read_text())
    if torn:
        print(f"{torn} audit events torn by a killed API server were skipped")
    for event in events:
        write = _parse(event)
        if write is not None and write.identity in wanted and write.namespace == namespace:
            writes.append(write)
    return writes


@dataclass
class Term:
    holder: str
    number: int
    #: The Lease write that began it, and the one that began the next term (``None``: last).
    start: Write
    end: Write | None = None
    writes: int = 0


@dataclass
class TermReport:
    terms: list[Term]
    writes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    #: The longest a write came after its replica's last Lease write (server clock).
    latest_after_renewal_s: float = 0.0
    #: Writes sent before their replica was stopped in time but received after its lease.
    late_receipts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        terms = ", ".join(f"#{t.number} {t.holder} ({t.writes} writes)" for t in self.terms)
        return (
            f"{len(self.terms)} terms: {terms}; {sum(self.writes.values())} writes checked; "
            f"latest write {self.latest_after_renewal_s:.3f}s after its replica's last Lease "
            f"write; {len(self.late_receipts)} sent before a timely SIGSTOP but received "
            f"after the lease; {len(self.violations)} violations"
        )


#: A replica's SIGSTOP and SIGCONT, wall-clock seconds (the audit log's clock: same machine).
Stop = tuple[float, float]


@dataclass(frozen=True)
class Timings:
    lease_duration_s: float
    renew_deadline_s: float
    #: identity -> the times that replica was stopped.
    stops: dict[str, list[Stop]] = field(default_factory=dict)
    #: How long after its SIGCONT a write a stopped replica had in flight may still arrive
    #: (a resumed thread's send and the server's read, from the machine's measured speed).
    resume_grace_s: float = 0.0


def check_terms(writes: list[Write], namespace: str, lease: str, timings: Timings) -> TermReport:
    """Cut the writes into terms of the Lease ``namespace/lease``; see the module docstring."""

    def is_election(write: Write) -> bool:
        return write.resource == "leases" and (write.namespace, write.name) == (namespace, lease)

    elections = sorted(
        (w for w in writes if is_election(w) and w.succeeded and w.resource_version is not None),
        key=lambda w: w.resource_version or 0,
    )
    terms: list[Term] = []
    for write in elections:
        assert write.record is not None
        current = terms[-1] if terms else None
        if current is None or write.record.holder != current.holder:
            if current is not None:
                current.end = write
            terms.append(Term(write.record.holder, write.record.transitions, write))
    report = TermReport(terms)
    others = [w for w in writes if not is_election(w)]
    for write in others:
        _check_order(write, terms, report)
        _check_lease_bound(write, elections, timings, report)
    return report


def _term_of(write: Write, terms: list[Term]) -> Term | None:
    """The term in force when ``write`` happened, or ``None`` if that cannot be told."""
    if write.resource_version is not None:
        rv = write.resource_version
        before = [t for t in terms if (t.start.resource_version or 0) < rv]
        return before[-1] if before else None
    # No object in the entry (a Secret): only server times; it must fit wholly in one term.
    for term in terms:
        began = term.start.completed <= write.received
        ended = term.end is None or write.completed <= term.end.received
        if began and ended:
            return term
    return None


def _check_order(write: Write, terms: list[Term], report: TermReport) -> None:
    if not write.succeeded:
        return
    report.writes[write.identity] += 1
    term = _term_of(write, terms)
    if term is None or term.holder != write.identity:
        holder = "no term" if term is None else f"term #{term.number} of {term.holder or 'nobody'}"
        report.violations.append(f"{write} landed in {holder}")
    else:
        term.writes += 1


def _check_lease_bound(
    write: Write, elections: list[Write], timings: Timings, report: TermReport
) -> None:
    own = [
        w
        for w in elections
        if w.identity == write.identity
        and w.record is not None
        and w.record.holder == write.identity
        and w.received <= write.received
    ]
    if not own:
        report.violations.append(f"{write} came before its replica ever held the Lease")
        return
    last = own[-1]
    after = write.received - last.received
    report.latest_after_renewal_s = max(report.latest_after_renewal_s, after)
    if after < timings.lease_duration_s:
        return
    gate_closed = last.completed + timings.renew_deadline_s
    for stopped, continued in timings.stops.get(write.identity, []):
        if stopped <= gate_closed and stopped <= write.received <= (
            continued + timings.resume_grace_s
        ):
            report.late_receipts.append(
                f"{write} received {after:.3f}s after its replica's last Lease write, "
                f"{write.received - stopped:.3f}s after the replica was stopped and "
                f"{write.received - continued:+.3f}s from its SIGCONT"
            )
            return
    report.violations.append(
        f"{write} arrived {after:.3f}s after its replica's last Lease write: a standby "
        "could have taken the Lease by then"
    )
