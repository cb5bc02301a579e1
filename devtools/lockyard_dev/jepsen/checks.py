"""Checks beside linearizability: fencing, lock beliefs, the partitioned client, error types.

- Fencing: the writes a fenced resource accepted, in version order, carry tokens that never go
  down (a stale holder's write is refused). The resource is a key of the same store, so this
  holds wherever the store is linearizable; on Sentinel a failover forks the store itself.
- Beliefs: two holders who both believed they held one lock at the same instant (measured on
  the host's one monotonic clock). Leases make this depend on scheduling, so overlaps are
  reported with their size, and the lock model decides whether a backend broke a lease.
- The partitioned client: it gave its ``hold()`` up within the TTL of its last confirmed lease,
  another client then got the lock, its stale fenced write after the heal was refused and its
  release reported the lock lost.
- Error types: every exception must be a ``StateError``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from lockyard_dev.jepsen.spec import victim_lock


@dataclass
class Checks:
    holds: int = 0
    belief_overlaps: int = 0
    max_overlap_ms: float = 0.0
    fenced_writes: int = 0
    stale_writes_refused: int = 0
    #: Accepted fenced writes that followed a higher token (a bug, unless the resource's own
    #: store lost writes: Sentinel's failover forks it).
    fence_anomalies: list[str] = field(default_factory=list)
    victim: dict[str, Any] = field(default_factory=dict)
    tally: dict[str, Any] = field(default_factory=dict)
    #: Broken promises: each is a bug on any backend.
    problems: list[str] = field(default_factory=list)


def _token(value: str) -> int:
    return int(value.split(":", 1)[0])


def fence_order(events: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Accepted fenced writes per resource, and any that followed a higher token."""
    invoked: dict[str, dict[str, Any]] = {}
    accepted: dict[str, list[tuple[int, int]]] = defaultdict(list)  # key -> (version, token)
    for event in events:
        if event["type"] == "invoke" and ":fence:" in event.get("key", ""):
            invoked[event["id"]] = event
            continue
        call = invoked.pop(event.get("id", ""), None)
        if call is None or event["type"] != "ok":
            continue
        result = event.get("result", {})
        if call["f"] == "check_and_set" and result.get("created"):
            accepted[call["key"]].append((1, _token(call["args"]["value"])))
        elif call["f"] == "compare_and_swap" and result.get("ok"):
            accepted[call["key"]].append((result["version"], _token(call["args"]["value"])))
    problems = []
    for key, writes in accepted.items():
        writes.sort()
        for (v1, t1), (v2, t2) in itertools.pairwise(writes):
            if t2 < t1:
                problems.append(
                    f"{key}: version {v2} written with token {t2} after token {t1} (v{v1})"
                )
    return sum(len(w) for w in accepted.values()), problems


def belief_overlaps(beliefs: list[dict[str, Any]]) -> tuple[int, float]:
    by_lock: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for belief in beliefs:
        by_lock[belief["lock"]].append(belief)
    count, worst = 0, 0.0
    for held in by_lock.values():
        held.sort(key=lambda b: b["start"])
        for i, first in enumerate(held):
            for later in held[i + 1 :]:
                if later["start"] >= first["end"]:
                    break
                if later["owner"] != first["owner"]:
                    count += 1
                    worst = max(worst, (first["end"] - later["start"]) / 1e6)
    return count, worst


def victim_checks(
    run_id: str, notes: list[dict[str, Any]], beliefs: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    name = victim_lock(run_id)
    found: dict[str, Any] = {}
    problems: list[str] = []
    lost = next((n for n in notes if n["note"] == "victim_lost"), None)
    if lost is None:
        unheld = any(n["note"] == "victim_unheld" for n in notes)
        problems.append(
            "partition: the cut-off client never got its lock"
            if unheld
            else "partition: the cut-off client never gave its lock up"
        )
        return found, problems
    ttl_ms = lost["ttl_ms"]
    found["gave_up_after_ms"] = round((lost["lost"] - lost["lease_start"]) / 1e6, 1)
    found["ttl_ms"] = ttl_ms
    if found["gave_up_after_ms"] > ttl_ms:
        problems.append(
            f"partition: the cut-off client gave its lock up {found['gave_up_after_ms']} ms after "
            f"its last confirmed lease began, beyond the TTL of {ttl_ms} ms"
        )
    takers = [b for b in beliefs if b["lock"] == name and b["token"] != lost["token"]]
    if takers:
        first = min(takers, key=lambda b: b["start"])
        found["taken_over_after_ms"] = round((first["start"] - lost["lease_start"]) / 1e6, 1)
        found["taker_token"] = first["token"]
    else:
        problems.append("partition: no other client got the cut-off client's lock")
    zombie = next((n for n in notes if n["note"] == "zombie_write"), None)
    found["stale_write"] = zombie["outcome"] if zombie else "not tried"
    if zombie and zombie["outcome"] in {"written", "conflict"} and takers:
        problems.append(
            f"partition: the stale holder's fenced write was {zombie['outcome']}, not refused"
        )
    release = next((n for n in notes if n["note"] == "zombie_release"), None)
    found["stale_release"] = release["outcome"] if release else "not tried"
    if release and release["outcome"] == "held":
        problems.append("partition: the stale holder's release said it still held the lock")
    return found, problems


def run_checks(
    run_id: str, events: list[dict[str, Any]], notes: list[dict[str, Any]], partitioned: bool
) -> Checks:
    checks = Checks()
    beliefs = [n for n in notes if n["note"] == "belief"]
    checks.holds = len(beliefs)
    checks.belief_overlaps, checks.max_overlap_ms = belief_overlaps(beliefs)
    checks.fenced_writes, checks.fence_anomalies = fence_order(events)
    checks.stale_writes_refused = sum(1 for n in notes if n["note"] == "fence_rejected")
    tallies = [n for n in notes if n["note"] == "tally"]
    errors: Counter[str] = Counter()
    foreign: Counter[str] = Counter()
    for tally in tallies:
        errors.update(tally["errors"])
        foreign.update(tally["foreign"])
    checks.tally = {
        "ok": sum(t["ok"] for t in tallies),
        "fail": sum(t["fail"] for t in tallies),
        "info": sum(t["info"] for t in tallies),
        "errors": dict(errors),
        "late_workers_tasks": sum(t["late"] for t in tallies),
    }
    for name, count in foreign.items():
        checks.problems.append(f"{count} exception(s) outside the client's error contract: {name}")
    for failed in (n for n in notes if n["note"] == "connect_failed"):
        checks.problems.append(f"a worker could not connect: {failed['error']}")
    if partitioned:
        checks.victim, victim_problems = victim_checks(run_id, notes, beliefs)
        checks.problems += victim_problems
    return checks
