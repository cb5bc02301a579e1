"""The invariants a stress or chaos run checks, each as a small ledger fed by the workload.

An operation that failed has an unknown effect (it may have been applied before the answer was
lost), so every ledger keeps acknowledged effects and unknown ones apart and only flags what no
combination of the unknown ones explains:

- :class:`CounterLedger`: a counter equals the sum of its applied deltas. Deltas are positive,
  so the values ``increment`` returned, sorted, must each start where an earlier one ended; a
  gap is only allowed up to the deltas whose outcome is unknown.
- :class:`CasLedger`: each CAS chain is gapless. Values carry their version (``v7:...``), so a
  torn read is visible; winners never share a version, and the final version is 1 + the wins
  (+ at most the unknown attempts).
- :class:`DedupLedger`: each dedup key has exactly one ``check_and_set`` winner, whose value
  stays.
- :class:`RegisterModel`: a task's private keys behave like a local dict (read-your-writes,
  versions, deletes, expiry, literal scans).
- :class:`IndexModel`: a task's entries in both time indexes.
- :class:`FencedResource`: a resource guarded by a lock never sees two holders at once, and
  fencing tokens only rise.

Anomalies that only a server losing acknowledged writes can explain go to
:meth:`Recorder.lost`: a violation unless the scenario documents that the server may lose them
(a Sentinel failover: asynchronous replication).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from lockyard_dev.stress.recorder import Recorder

#: Slack for comparing our monotonic clock with a server's expiry clock (rounding, scheduling).
EXPIRY_MARGIN_S = 0.025

CAS_VALUE = re.compile(r"^v(\d+):")


# -- counters ----------------------------------------------------------------------------------
class CounterLedger:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.acked: dict[str, int] = dict.fromkeys(keys, 0)
        self.unknown: dict[str, int] = dict.fromkeys(keys, 0)
        self.returns: dict[str, list[tuple[int, int]]] = {k: [] for k in keys}

    def applied(self, key: str, delta: int, result: int) -> None:
        self.acked[key] += delta
        self.returns[key].append((result, delta))

    def ambiguous(self, key: str, delta: int) -> None:
        self.unknown[key] += delta

    def verify(self, rec: Recorder, key: str, final: int) -> None:
        rec.covered("counters", "keys")
        rec.covered("counters", "increments", len(self.returns[key]))
        previous, gaps = 0, 0
        for result, delta in sorted(self.returns[key]):
            before = result - delta
            if before < previous:
                rec.lost(
                    "counters",
                    f"{key}: increment({delta}) returned {result}, so it started from {before}, "
                    f"below the {previous} an earlier increment already returned",
                )
            else:
                gaps += before - previous
            previous = max(previous, result)
        if final < previous:
            rec.lost("counters", f"{key}: final value {final} is below a returned {previous}")
        gaps += max(0, final - previous)
        acked = self.acked[key]
        rec.count_lost("counter increments (sum of deltas)", acked - final, acked)
        if gaps > self.unknown[key]:
            rec.violation(
                "counters",
                f"{key}: final value {final}, acknowledged deltas sum to {self.acked[key]}; "
                f"{gaps} unexplained, and unacknowledged deltas add up to only "
                f"{self.unknown[key]}",
            )


# -- compare-and-swap chains -------------------------------------------------------------------
def cas_version_of(value: str) -> int | None:
    found = CAS_VALUE.match(value)
    return int(found.group(1)) if found else None


class CasLedger:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.wins: dict[str, dict[int, str]] = {k: {} for k in keys}
        self.created: dict[str, list[str]] = {k: [] for k in keys}
        self.ambiguous: dict[str, list[str]] = {k: [] for k in keys}
        self.win_count: Counter[str] = Counter()

    def observe(self, rec: Recorder, key: str, value: str | None, version: int) -> None:
        """A (value, version) pair read together must agree: values carry their version."""
        rec.covered("cas", "reads")
        if value is None:
            if version != 0:
                rec.violation("cas", f"{key}: no value but version {version}")
            return
        if cas_version_of(value) != version:
            rec.violation("cas", f"{key}: torn read: value {value[:40]!r} with version {version}")

    def created_by(self, rec: Recorder, key: str, value: str) -> None:
        self.created[key].append(value)
        if len(self.created[key]) > 1:
            rec.lost("cas", f"{key}: the chain was created a second time (its data vanished)")

    def won(self, rec: Recorder, key: str, version: int, value: str) -> None:
        rec.covered("cas", "wins")
        self.win_count[key] += 1
        if version in self.wins[key]:
            rec.lost(
                "cas",
                f"{key}: two compare_and_swap calls both won version {version} (a lost update)",
            )
        self.wins[key][version] = value

    def verify(self, rec: Recorder, key: str, final: tuple[str, int] | None) -> None:
        rec.covered("cas", "chains")
        wins, unknown = self.wins[key], self.ambiguous[key]
        won = self.win_count[key]
        rec.count_lost("CAS wins", won - (0 if final is None else final[1] - 1), won)
        if final is None:
            if wins or self.created[key]:
                rec.lost("cas", f"{key}: the chain with {len(wins)} wins is gone")
            return
        value, version = final
        self.observe(rec, key, value, version)
        if wins and version < max(wins):
            rec.lost("cas", f"{key}: final version {version} is below won version {max(wins)}")
            return
        missing = [v for v in range(2, version + 1) if v not in wins]
        if len(missing) > len(unknown):
            rec.violation(
                "cas",
                f"{key}: versions {missing[:5]} were never reported won, and only "
                f"{len(unknown)} attempts had an unknown outcome (final version {version}, "
                f"{len(wins)} wins)",
            )
        if version in wins:
            if value != wins[version]:
                rec.lost("cas", f"{key}: final value {value!r} is not the winner's")
        elif value not in unknown and value not in self.created[key]:
            rec.violation("cas", f"{key}: final value {value!r} was written by nobody")


# -- dedup -------------------------------------------------------------------------------------
class DedupLedger:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.winners: defaultdict[str, list[str]] = defaultdict(list)
        self.ambiguous: defaultdict[str, list[str]] = defaultdict(list)

    def verify(self, rec: Recorder, key: str, stored: str | None) -> None:
        rec.covered("dedup", "keys")
        rec.covered("dedup", "attempts", self.attempts[key])
        winners = self.winners[key]
        kept = 1 if stored is not None and stored in winners else 0
        rec.count_lost("check_and_set wins", len(winners) - kept, len(winners))
        if len(winners) > 1:
            rec.lost("dedup", f"{key}: {len(winners)} check_and_set calls all won")
        if winners:
            if stored not in winners:
                rec.lost("dedup", f"{key}: the winner's value is gone (now {stored!r})")
        elif stored is None:
            if not self.ambiguous[key]:
                rec.violation(
                    "dedup",
                    f"{key}: {self.attempts[key]} check_and_set calls, none won, and no value",
                )
        elif stored not in self.ambiguous[key]:
            rec.violation("dedup", f"{key}: value {stored!r} was written by nobody")


# -- a task's private keys ---------------------------------------------------------------------
@dataclass
class Slot:
    """What one private key holds, as far as its task knows."""

    state: Literal["absent", "live", "unknown"] = "absent"
    value: str | None = None
    version: int | None = None
    #: Bounds of the server's deadline: surely live before ``live_until``, surely gone after
    #: ``dead_after`` (both None: no expiry).
    live_until: float | None = None
    dead_after: float | None = None


Expectation = Literal["absent", "live", "unsure"]


def expect(slot: Slot, started: float, ended: float) -> Expectation:
    """What a read that ran from ``started`` to ``ended`` must have seen."""
    if slot.state != "live":
        return "unsure" if slot.state == "unknown" else "absent"
    if slot.dead_after is None or slot.live_until is None:
        return "live"
    if started > slot.dead_after + EXPIRY_MARGIN_S:
        return "absent"
    if ended < slot.live_until - EXPIRY_MARGIN_S:
        return "live"
    return "unsure"


@dataclass
class RegisterModel:
    """One task's private keys (no other task touches them)."""

    slots: dict[str, Slot] = field(default_factory=dict)

    def slot(self, key: str) -> Slot:
        found = self.slots.get(key)
        if found is None:
            found = self.slots[key] = Slot()
        return found

    def forget(self, key: str) -> None:
        self.slots[key] = Slot(state="unknown")

    def was_set(
        self, key: str, value: str, ttl: float | None, started: float, ended: float
    ) -> None:
        before = expect(self.slot(key), started, ended)
        old = self.slot(key)
        version = 1 if before == "absent" else None
        if before == "live" and old.version is not None:
            version = old.version + 1
        self.slots[key] = Slot(
            "live",
            value,
            version,
            None if ttl is None else started + ttl,
            None if ttl is None else ended + ttl,
        )

    def check_read(
        self,
        rec: Recorder,
        key: str,
        found: tuple[str, int | None] | None,
        started: float,
        ended: float,
    ) -> None:
        """``found`` is (value, version or None when the read gives no version), or None."""
        slot = self.slot(key)
        seen = expect(slot, started, ended)
        rec.covered("registers", "reads")
        if seen == "absent":
            if found is not None:
                rec.lost("registers", f"{key}: read {found[0][:40]!r}, expected no value")
            self.slots[key] = Slot()
        elif seen == "live":
            if found is None:
                rec.lost("registers", f"{key}: read nothing, expected {slot.value!r}")
                self.forget(key)
                return
            value, version = found
            if value != slot.value:
                rec.lost("registers", f"{key}: read {value[:40]!r}, expected {slot.value!r}")
                self.forget(key)
            elif version is not None:
                if slot.version is None:
                    slot.version = version
                elif version != slot.version:
                    rec.lost("registers", f"{key}: version {version}, expected {slot.version}")

    def was_deleted(
        self, rec: Recorder, key: str, existed: bool, started: float, ended: float
    ) -> None:
        seen = expect(self.slot(key), started, ended)
        rec.covered("registers", "deletes")
        if seen == "absent" and existed:
            rec.lost("registers", f"{key}: delete returned True for a missing key")
        elif seen == "live" and not existed:
            rec.lost("registers", f"{key}: delete returned False for a live key")
        self.slots[key] = Slot()

    def was_incremented(
        self, rec: Recorder, key: str, delta: int, result: int, started: float, ended: float
    ) -> None:
        slot = self.slot(key)
        seen = expect(slot, started, ended)
        rec.covered("registers", "increments")
        if seen == "absent":
            if result != delta:
                rec.lost("registers", f"{key}: increment({delta}) of nothing gave {result}")
            self.slots[key] = Slot("live", str(delta), 1)
            return
        if seen == "live" and slot.value is not None:
            try:
                expected = int(slot.value)
            except ValueError:
                rec.lost(
                    "registers",
                    f"{key}: increment of the non-integer {slot.value!r} returned {result}",
                )
                self.forget(key)
                return
            if result != expected + delta:
                rec.lost("registers", f"{key}: {slot.value} + {delta} gave {result}")
            version = None if slot.version is None else slot.version + 1
            self.slots[key] = Slot("live", str(result), version, slot.live_until, slot.dead_after)
            return
        self.forget(key)

    def refused_increment(self, rec: Recorder, key: str, started: float, ended: float) -> None:
        """``increment`` raised ``SerializationError``: only right for a non-integer value."""
        slot = self.slot(key)
        seen = expect(slot, started, ended)
        if seen == "absent":
            rec.lost("registers", f"{key}: increment of a missing key was refused")
        elif seen == "live" and slot.value is not None and _is_int(slot.value):
            rec.lost("registers", f"{key}: increment of {slot.value!r} was refused")
            self.forget(key)

    def check_scan(
        self,
        rec: Recorder,
        anchor: str,
        prefix: str,
        found: list[tuple[str, str]],
        started: float,
        ended: float,
    ) -> None:
        rec.covered("scans", "scans")
        rec.covered("scans", "entries", len(found))
        keys = [k for k, _ in found]
        if len(keys) != len(set(keys)):
            rec.violation("scans", f"scan of {anchor + prefix!r} returned a key twice")
        got = dict(found)
        for k in got:
            if not k.startswith(anchor + prefix):
                rec.violation("scans", f"scan of {anchor + prefix!r} returned {k!r}")
            elif k not in self.slots:
                rec.violation("scans", f"scan of {anchor + prefix!r} returned unknown {k!r}")
        for k, slot in self.slots.items():
            if not k.startswith(anchor + prefix):
                continue
            seen = expect(slot, started, ended)
            if seen == "absent" and k in got:
                rec.lost("scans", f"scan returned {k!r}, which is deleted or expired")
            elif seen == "live" and got.get(k) != slot.value:
                rec.lost("scans", f"scan gave {k!r} = {got.get(k)!r}, expected {slot.value!r}")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# -- time indexes ------------------------------------------------------------------------------
@dataclass
class IndexModel:
    """One task's entries in one index: key -> timestamp, or None when unknown."""

    entries: dict[str, int | None] = field(default_factory=dict)

    def check_due(self, rec: Recorder, index: str, own: str, now_ms: int, found: list[str]) -> None:
        rec.covered("indexes", "reads")
        if len(found) != len(set(found)):
            rec.violation("indexes", f"{index} index returned a key twice")
        mine = {k for k in found if k.startswith(own)}
        unsure = {k for k, at in self.entries.items() if at is None}
        expected = {k for k, at in self.entries.items() if at is not None and at <= now_ms}
        if mine - unsure != expected:
            extra, missing = sorted(mine - unsure - expected), sorted(expected - mine)
            message = f"{index} index at {now_ms}: extra {extra[:3]}, missing {missing[:3]}"
            rec.lost("indexes", message)


# -- locks -------------------------------------------------------------------------------------
@dataclass
class Holder:
    task: int
    token: int
    entered: float
    lease_s: float


class FencedResource:
    """Resources that each lock protects; they record who is inside and the tokens shown.

    A token below the highest one shown so far belongs to a stale holder, which a real
    resource rejects by its token. On a single server that never happens; across a Sentinel
    failover it does (clients that have not yet followed ``+switch-master`` still acquire on the
    old master, whose tokens are of the older epoch): measured, and a violation unless the
    scenario expects overlaps. A token shown twice for one name is always a violation.
    """

    def __init__(self, rec: Recorder, overlaps_expected: bool) -> None:
        self.rec = rec
        self.overlaps_expected = overlaps_expected
        self.inside: defaultdict[str, list[Holder]] = defaultdict(list)
        self.highest: dict[str, int] = {}
        self.seen: defaultdict[str, set[int]] = defaultdict(set)
        self.holds = 0
        self.overlaps = 0
        self.overlap_messages: list[str] = []
        self.stale = 0
        #: Monotonic times of the first and last stale holder.
        self.stale_span: tuple[float, float] | None = None

    def enter(self, name: str, task: int, token: int, lease_s: float) -> None:
        now = time.monotonic()
        self.holds += 1
        self.rec.covered("fencing", "holds")
        for other in self.inside[name]:
            if now - other.entered > other.lease_s:
                self.rec.outcome("lock overlap after the holder outlived its lease")
                continue
            self.overlaps += 1
            message = (
                f"{name}: task {task} (token {token}) entered while task {other.task} "
                f"(token {other.token}) was inside for {now - other.entered:.3f}s"
            )
            if len(self.overlap_messages) < 20:
                self.overlap_messages.append(message)
            if not self.overlaps_expected:
                self.rec.violation("fencing", message)
        if token in self.seen[name]:
            self.rec.violation("fencing", f"{name}: fencing token {token} handed out twice")
        self.seen[name].add(token)
        highest = self.highest.get(name, 0)
        if token <= highest:
            self.stale += 1
            first = now if self.stale_span is None else self.stale_span[0]
            self.stale_span = (first, now)
            message = f"{name}: fencing token {token} after {highest} (a stale holder)"
            if self.overlaps_expected:
                self.rec.outcome("stale holder: token below one already shown (rejected)")
            else:
                self.rec.violation("fencing", message)
        else:
            self.highest[name] = token
        self.inside[name].append(Holder(task, token, now, lease_s))

    def leave(self, name: str, task: int) -> None:
        self.inside[name] = [h for h in self.inside[name] if h.task != task]
