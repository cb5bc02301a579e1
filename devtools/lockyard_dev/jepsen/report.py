"""Printing Jepsen results: one block per run, a table over all of them, and the JSON figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.jepsen.run import RunResult


def _errors(result: RunResult) -> str:
    errors = result.checks.tally.get("errors", {})
    if not errors:
        return "none"
    return ", ".join(f"{count:,} {name}" for name, count in sorted(errors.items()))


def describe(result: RunResult) -> str:
    """A run in words, with every violation's minimal failing sub-history."""
    v, c = result.verdict, result.checks
    load = "/".join(f"{x:.1f}" for x in result.load_before)
    lines = [
        f"== {result.backend} / {result.scenario} (run {result.run_id}, {result.seconds:g} s, "
        f"load {load})",
        f"  operations: {result.invocations:,} invoked, {v.operations:,} checked "
        f"({v.unknown_outcomes:,} with unknown outcome, {v.failed:,} failed), "
        f"{len(v.keys)} keys; checker {v.seconds:.1f} s",
        f"  verdict: {v.verdict}"
        + (f" (undecided: {', '.join(v.undecided_keys)})" if v.undecided_keys else ""),
        f"  errors seen by clients: {_errors(result)}",
        f"  locks: {c.holds:,} holds, {c.fenced_writes:,} fenced writes accepted, "
        f"{c.stale_writes_refused:,} stale writes refused, {c.belief_overlaps} belief overlaps"
        + (f" (max {c.max_overlap_ms:.1f} ms)" if c.belief_overlaps else ""),
    ]
    if c.fence_anomalies:
        lines.append(
            f"  fencing: {len(c.fence_anomalies)} accepted writes followed a higher token, "
            f"first: {c.fence_anomalies[0]}"
        )
    counters = result.counters
    if "lost_units" in counters:
        lines.append(
            f"  counters: {counters['acknowledged_units']:,} acknowledged units, "
            f"{counters['lost_units']:,} lost, {counters['phantom_units']:,} phantom"
        )
    elif counters:
        lines.append(f"  counters: {counters.get('error')}")
    if c.victim:
        lines.append(
            "  partitioned client: "
            + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in c.victim.items())
        )
    for violation in v.violations:
        lines.append(f"  VIOLATION {violation.key} ({violation.model}):")
        lines += ["    " + line for line in violation.text.rstrip().splitlines()]
        if violation.html:
            lines.append(f"    drawing: {violation.html}")
    for problem in result.problems:
        lines.append(f"  PROBLEM: {problem}")
    return "\n".join(lines)


def table(results: Sequence[RunResult]) -> str:
    """A Markdown table, one row per run (what docs/reliability.md shows)."""
    rows = [
        "| backend | scenario | ops checked | unknown outcome | verdict | errors seen | "
        "holds / fenced writes / stale refused | counter units lost | problems |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lost = r.counters.get("lost_units", "-")
        verdict = r.verdict.verdict
        if r.verdict.violations:
            verdict += f" ({len(r.verdict.violations)} keys)"
        rows.append(
            f"| {r.backend} | {r.scenario} | {r.verdict.operations:,} | "
            f"{r.verdict.unknown_outcomes:,} | {verdict} | {_errors(r)} | "
            f"{r.checks.holds} / {r.checks.fenced_writes} / {r.checks.stale_writes_refused} | "
            f"{lost} | {len(r.problems)} |"
        )
    return "\n".join(rows)


def write_json(results: Sequence[RunResult], path: Path) -> None:
    path.write_text(json.dumps([r.as_dict() for r in results], indent=1, default=str))
