"""``python -m lockyard.chaos``: the command line behind ``make chaos``.

Runs the chosen scenarios one after another (each starts and stops its own servers), prints a
report per scenario and a summary table, and optionally writes every figure as JSON. Exit
status: 0 when every scenario recovered without a violation, 1 otherwise, 3 when a scenario
could not be run (its server or driver is missing), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from lockyard.chaos.driver import ChaosResult, ChaosSettings, ScenarioUnavailable, run_scenario
from lockyard.chaos.scenarios import SCENARIOS
from lockyard.stress.cli import non_negative, positive, positive_int
from lockyard.stress.figures import exit_code, write_figures
from lockyard.stress.report import counted, invariants_table, lost_acknowledged, table

DESCRIPTION = (
    "Kill, fail over or restart each backend's server under the stress workload and check that "
    "callers only see StateErrors within the timeout, that everything recovers on the same "
    "connections, and that nothing acknowledged is lost."
)


def scenario_list(text: str, known: Sequence[str] = tuple(SCENARIOS)) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one scenario")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return names


def build_parser(
    known: Sequence[str] = tuple(SCENARIOS),
    prog: str = "python -m lockyard.chaos",
    description: str = DESCRIPTION,
) -> argparse.ArgumentParser:
    """The flags of ``make chaos``; ``known`` scenario names (``lockyard_operator.chaos`` adds
    the Kubernetes ones, which the library cannot import)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--scenarios",
        type=functools.partial(scenario_list, known=tuple(known)),
        default=list(known),
        help=f"comma-separated (default: {','.join(known)})",
    )
    parser.add_argument("--tasks", type=positive_int, default=16, help="concurrent tasks (16)")
    parser.add_argument("--connections", type=positive_int, default=4, help="connections (4)")
    parser.add_argument(
        "--warmup", type=non_negative, default=3.0, help="seconds before the fault (3)"
    )
    parser.add_argument(
        "--outage", type=non_negative, default=2.0, help="seconds the server stays down (2)"
    )
    parser.add_argument(
        "--after", type=non_negative, default=8.0, help="seconds of workload after it is back (8)"
    )
    parser.add_argument(
        "--operation-timeout",
        type=positive(float),
        default=2.0,
        help="the connections' operation timeout in seconds (2)",
    )
    parser.add_argument(
        "--slack",
        type=non_negative,
        default=0.5,
        help="how far past its bound a failing operation may return (0.5 s)",
    )
    parser.add_argument(
        "--hold-ms",
        type=non_negative,
        default=20.0,
        help="longest stay inside a lock-protected resource (20 ms)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    return parser


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


def settings_from(args: argparse.Namespace) -> ChaosSettings:
    """The settings the flags of :func:`build_parser` ask for (a random seed unless given)."""
    return ChaosSettings(
        tasks=args.tasks,
        connections=args.connections,
        warmup_s=args.warmup,
        outage_s=args.outage,
        after_s=args.after,
        operation_timeout_s=args.operation_timeout,
        slack_s=args.slack,
        hold_ms=args.hold_ms,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    results, skipped = asyncio.run(run_all(args.scenarios, settings))
    print(format_summary(results, skipped))
    if args.json is not None:
        command = " ".join(["python -m lockyard.chaos", *(argv or sys.argv[1:])])
        write_figures(args.json, command, "scenarios", results, skipped, seed=settings.seed)
    return exit_code(results, skipped)


async def run_all(
    names: Sequence[str], settings: ChaosSettings
) -> tuple[list[ChaosResult], dict[str, str]]:
    results: list[ChaosResult] = []
    skipped: dict[str, str] = {}
    for name in names:
        print(f"-- {name}: starting", file=sys.stderr, flush=True)
        try:
            result = await run_scenario(SCENARIOS[name], settings)
        except ScenarioUnavailable as exc:
            skipped[name] = str(exc)
            print(f"-- {name}: not run: {skipped[name]}", file=sys.stderr, flush=True)
            continue
        print(format_result(result), flush=True)
        results.append(result)
    return results, skipped
