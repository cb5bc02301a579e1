"""The text ``make chaos`` prints for a backend scenario: its report and the summary table."""

from __future__ import annotations

from collections.abc import Sequence

from lockyard_dev.chaos.driver import ChaosResult
from lockyard_dev.stress.report import counted, invariants_table, lost_acknowledged, table


def format_result(result: ChaosResult) -> str:
    run, rec, s = result.run, result.run.rec, result.settings
    slowest = "no operation failed"
    if result.slowest_failure is not None:
        op, took, bound = result.slowest_failure
        slowest = f"{op} after {took:.3f} s (its bound: {bound:.2f} s)"
    if result.first_failure_s is None:
        window = "callers saw no error"
    else:
        window = (
            f"callers saw errors from {result.first_failure_s:+.2f} s to "
            f"+{result.recover_s:.2f} s after the fault"
        )
    recovered = "yes" if result.recovered else f"NO ({', '.join(result.unrecovered) or 'reads'})"
    per_second = " ".join(
        f"{'|' if second == 0 else ''}{ok}/{failed}" for second, ok, failed in result.timeline
    )
    lines = [
        f"== {result.scenario.name}: {result.scenario.description}",
        f"   {s.tasks} tasks on {s.connections} connections, operation timeout "
        f"{s.operation_timeout_s:g} s; server back {result.downtime_s:.2f} s after the fault",
        f"   {run.url}",
        f"operations attempted {result.attempted:,}, failed {result.failed:,} "
        f"({counted(result.errors)})",
        f"{window}: time to recover {result.recover_s:.2f} s",
        f"recovered on the same connections: {recovered}; {result.ok_after_recovery:,} "
        "operations succeeded after the last failure",
        f"slowest failure: {slowest}",
        f"lock holds {run.lock_holds:,}, overlapping holders {run.lock_overlaps}, stale "
        f"holders rejected by their fencing token {run.stale_holders} (over "
        f"{run.stale_window_s:.2f} s)",
        f"acknowledged writes lost (lower bounds): {lost_acknowledged(rec)}; invariant anomalies "
        f"that only lost writes explain: {rec.loss_anomalies}",
        f"per second, ok/failed ('|' marks the fault): {per_second}",
        "",
        invariants_table(rec),
        "",
        f"violations: {result.violations}",
    ]
    lines += [f"  {m}" for m in rec.messages]
    if rec.lost_messages:
        lines.append("anomalies explained by lost writes (asynchronous replication):")
        lines += [f"  {m}" for m in rec.lost_messages[:10]]
    if run.overlap_messages:
        lines.append("lock overlaps:")
        lines += [f"  {m}" for m in run.overlap_messages[:10]]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def format_summary(results: Sequence[ChaosResult], skipped: dict[str, str]) -> str:
    rows: list[tuple[object, ...]] = [
        (
            r.scenario.name,
            r.attempted,
            r.failed,
            f"{r.downtime_s:.2f}",
            f"{r.recover_s:.2f}",
            "-" if r.slowest_failure is None else f"{r.slowest_failure[1]:.3f}",
            "yes" if r.recovered else "NO",
            r.run.lock_overlaps,
            r.run.stale_holders,
            r.run.rec.loss_anomalies,
            r.violations,
        )
        for r in results
    ]
    rows += [
        (name, "-", "-", "-", "-", "-", "-", "-", "-", "-", f"not run: {why}")
        for name, why in skipped.items()
    ]
    headers = (
        "scenario",
        "attempted",
        "failed",
        "down s",
        "recover s",
        "max failed s",
        "recovered",
        "overlaps",
        "stale",
        "loss anomalies",
        "violations",
    )
    return table(headers, rows) + "\n"
