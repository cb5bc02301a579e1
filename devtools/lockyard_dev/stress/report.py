"""Plain-text tables of a stress run: per backend, then a summary across backends."""

from __future__ import annotations

from collections.abc import Sequence

from lockyard_dev.stress.recorder import Recorder
from lockyard_dev.stress.run import RunResult
from lockyard_dev.stress.workload import OPERATIONS

#: Every invariant, in print order, with the title the tables show.
CHECKS = {
    "counters": "counters = sum of applied deltas",
    "cas": "CAS chains gapless, no lost update",
    "dedup": "one check_and_set winner per key",
    "registers": "read-your-writes, versions, expiry",
    "scans": "scans complete, literal, each key once",
    "indexes": "time indexes exact",
    "locks": "lock loss always signalled",
    "fencing": "one holder at a time, tokens rise",
    "errors": "failures: StateError, within the timeout",
    "recovery": "verification reads succeed",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def counted(counter: dict[str, int]) -> str:
    if not counter:
        return "none"
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counter.items(), key=lambda i: -i[1]))


def lost_acknowledged(rec: Recorder) -> str:
    """What the server lost of what it acknowledged (lower bounds), or "none"."""
    lost = [(what, n, of) for what, (n, of) in rec.lost_acknowledged.items() if n]
    if not lost:
        return "none"
    return "; ".join(f"{what} {n:,} of {of:,}" for what, n, of in lost)


def operations_table(rec: Recorder) -> str:
    rows: list[tuple[object, ...]] = []
    names = [op for op in OPERATIONS if op in rec.ops] + sorted(set(rec.ops) - set(OPERATIONS))
    names += [op for op in OPERATIONS if op not in rec.ops]
    for op in names:
        stats = rec.ops.get(op)
        if stats is None:
            rows.append((op, 0, 0, "-", "-", "-"))
            continue
        if not stats.latencies:
            rows.append((op, stats.count, stats.failed, "-", "-", "-"))
            continue
        rows.append(
            (
                op,
                stats.count,
                stats.failed,
                f"{stats.percentile(0.5) * 1000:.2f}",
                f"{stats.percentile(0.99) * 1000:.2f}",
                f"{max(stats.latencies) * 1000:.1f}",
            )
        )
    return table(("operation", "ops", "failed", "p50 ms", "p99 ms", "max ms"), rows)


def invariants_table(rec: Recorder) -> str:
    rows: list[tuple[object, ...]] = []
    for name, title in CHECKS.items():
        check = rec.checks.get(name)
        covered = "-" if check is None else counted(dict(check.checked))
        rows.append(
            (
                title,
                covered,
                0 if check is None else check.loss_anomalies,
                0 if check is None else check.violations,
            )
        )
    return table(("invariant", "checked", "loss anomalies", "violations"), rows)


def format_run(result: RunResult) -> str:
    rec = result.rec
    rate = rec.total_ops / result.seconds if result.seconds else 0.0
    settings = result.settings
    lines = [
        f"== {result.backend}: {result.seconds:.1f} s, {settings.workload.tasks} tasks on "
        f"{1 if result.backend == 'memory' else settings.connections} connection(s), "
        f"{rec.total_ops:,} operations ({rate:,.0f}/s), operation timeout "
        f"{settings.operation_timeout_s:g} s, seed {settings.seed}",
        f"   {result.url}",
        "",
        operations_table(rec),
        "",
        f"errors by type: {counted(dict(rec.errors))}",
        f"normal outcomes: {counted(dict(rec.outcomes))}",
        f"lock holds checked by the fenced resource: {result.lock_holds:,}; "
        f"overlapping holders: {result.lock_overlaps}; stale holders (token below one "
        f"already shown): {result.stale_holders}",
        "",
        invariants_table(rec),
        "",
        f"violations: {rec.violations}",
    ]
    lines += [f"  {m}" for m in rec.messages]
    lines.append(f"acknowledged writes lost: {lost_acknowledged(rec)}")
    if rec.loss_anomalies:
        lines.append(f"anomalies explained by lost acknowledged writes: {rec.loss_anomalies}")
        lines += [f"  {m}" for m in rec.lost_messages[:10]]
    if result.overlap_messages:
        lines.append("lock overlaps:")
        lines += [f"  {m}" for m in result.overlap_messages[:10]]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def format_summary(results: Sequence[RunResult], skipped: dict[str, str]) -> str:
    rows: list[tuple[object, ...]] = [
        (
            r.backend,
            r.seconds,
            r.settings.workload.tasks,
            r.rec.total_ops,
            r.rec.total_ops / r.seconds if r.seconds else 0.0,
            sum(r.rec.errors.values()),
            r.lock_overlaps,
            r.violations,
        )
        for r in results
    ]
    rows += [
        (name, "-", "-", "-", "-", "-", "-", f"not run: {why}") for name, why in skipped.items()
    ]
    return (
        table(
            ("backend", "seconds", "tasks", "ops", "ops/s", "errors", "overlaps", "violations"),
            rows,
        )
        + "\n"
    )
