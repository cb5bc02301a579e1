"""``python -m lockyard_dev.bench``: the command line behind ``make bench``.

Parses and validates the flags (argparse; a bad flag exits 2 with a message naming it), runs
every target one after another (``--url`` for one URL, else ``--backends``, starting each
server itself), then prints the tables and writes ``report.md``, ``results.json`` and
``chart.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lockyard.config import parse_url
from lockyard.errors import ConfigError
from lockyard_dev.bench.environment import describe_environment
from lockyard_dev.bench.goals import check_goals
from lockyard_dev.bench.peers import PEER_IDS, PEERS
from lockyard_dev.bench.report import terminal_report, write_report
from lockyard_dev.bench.results import Results
from lockyard_dev.bench.runner import Plan, TargetRun, describe
from lockyard_dev.bench.scenarios import SCENARIOS, by_name
from lockyard_dev.bench.servers import BACKENDS, BackendUnavailable, started_server
from lockyard_dev.bench.store_ops import STORE_OP_NAMES
from lockyard_dev.bench.throughput import THROUGHPUT_TASKS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _task_counts(text: str) -> tuple[int, ...]:
    if text.strip() == "none":
        return ()
    return tuple(dict.fromkeys(_positive_int(part.strip()) for part in text.split(",")))


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number, zero or more")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero")
    return value


def _url(text: str) -> str:
    try:
        parse_url(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _choices(
    known: Sequence[str], what: str, allow_all: bool = False
) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if allow_all and names == ["all"]:
            return list(known)
        if allow_all and names == ["none"]:
            return []
        if not names:
            raise argparse.ArgumentTypeError(f"name at least one {what}")
        unknown = [name for name in names if name not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
            )
        return list(dict.fromkeys(names))

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lockyard_dev.bench",
        description=(
            "Benchmark Lockyard's store operations and lock cycles against the raw drivers and "
            "peer lock libraries, on real servers, and write a Markdown report and a chart."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        type=_url,
        help="benchmark this one Lockyard URL (its server must be running)",
    )
    where.add_argument(
        "--backends",
        type=_choices(BACKENDS, "backend"),
        default=list(BACKENDS),
        help=(
            "comma-separated backends to start servers for and benchmark "
            f"(default: {','.join(BACKENDS)}; one whose server cannot start here is skipped "
            "with a note)"
        ),
    )
    parser.add_argument(
        "--iterations",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="operations per measurement (default: 2000)",
    )
    parser.add_argument(
        "--passes",
        type=_positive_int,
        default=3,
        metavar="P",
        help="repeat everything P times; the report shows median, min and max (default: 3)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=64,
        metavar="TASKS",
        help="tasks for the concurrent store-operation runs (default: 64)",
    )
    parser.add_argument(
        "--lock-workers",
        type=_positive_int,
        default=16,
        metavar="W",
        help="workers fighting for one lock name in the contended run (default: 16)",
    )
    parser.add_argument(
        "--lock-cycles",
        type=_positive_int,
        default=1000,
        metavar="M",
        help="critical sections per contended run, all workers together (default: 1000)",
    )
    parser.add_argument(
        "--hold-ms",
        type=_non_negative,
        default=0.0,
        metavar="MS",
        help="time spent inside each contended critical section (default: 0, a bare yield)",
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive,
        default=3.0,
        metavar="S",
        help="cap on any single measurement, so slow backends bound the run (default: 3)",
    )
    parser.add_argument(
        "--peers",
        type=_choices(PEER_IDS, "peer", allow_all=True),
        default=list(PEER_IDS),
        metavar="LIST",
        help=f"peer libraries to compare: all, none, or some of {', '.join(PEER_IDS)}",
    )
    parser.add_argument(
        "--ops",
        type=_choices(STORE_OP_NAMES, "operation"),
        default=list(STORE_OP_NAMES),
        metavar="LIST",
        help=f"store operations to measure (default: all of {', '.join(STORE_OP_NAMES)})",
    )
    parser.add_argument(
        "--throughput-tasks",
        type=_task_counts,
        default=THROUGHPUT_TASKS,
        metavar="LIST",
        help="task counts of the concurrent-throughput table, or none "
        f"(default: {','.join(map(str, THROUGHPUT_TASKS))})",
    )
    scenario_names = [scenario.name for scenario in SCENARIOS]
    parser.add_argument(
        "--scenarios",
        type=_choices(scenario_names, "scenario"),
        default=scenario_names[:1],
        metavar="LIST",
        help=f"Lockyard scenarios to run (default: {scenario_names[0]}; known: "
        f"{', '.join(scenario_names)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        metavar="DIR",
        help="where report.md, results.json and chart.png go (default: bench/results)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip chart.png")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr, only the tables"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: {exc.strerror}")
    return asyncio.run(run(args, "python -m lockyard_dev.bench " + shlex.join(arguments)))


async def run(args: argparse.Namespace, command: str) -> int:
    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    plan = Plan(
        iterations=args.iterations,
        passes=args.passes,
        concurrency=args.concurrency,
        lock_workers=args.lock_workers,
        lock_cycles=args.lock_cycles,
        hold_ms=args.hold_ms,
        max_seconds=args.max_seconds,
        peers=args.peers,
        scenarios=by_name(args.scenarios),
        ops=args.ops,
        throughput_tasks=args.throughput_tasks,
    )
    settings = {
        "command": command,
        "iterations": plan.iterations,
        "passes": plan.passes,
        "concurrency": plan.concurrency,
        "lock_workers": plan.lock_workers,
        "lock_cycles": plan.lock_cycles,
        "hold_ms": plan.hold_ms,
        "max_seconds": plan.max_seconds,
        "peers": plan.peers,
        "scenarios": args.scenarios,
        "throughput_tasks": list(plan.throughput_tasks),
    }
    results = Results(settings, describe_environment())
    out: Path = args.out
    if args.url:
        await _run_target(args.url, plan, results, progress)
    else:
        for backend in args.backends:
            await _run_backend(backend, out, plan, results, progress)
    results.environment["load_end"] = describe_environment()["load"]
    checks = check_goals(results, frozenset(p.label for p in PEERS if p.backend == "memory"))
    chart = None
    if not args.no_chart and results.records:
        try:
            from lockyard_dev.bench.chart import write_chart

            chart = write_chart(results, out / "chart.png")
        except ImportError as exc:
            results.note("all", "chart", f"not drawn: {describe(exc)} (pip install matplotlib)")
        except Exception as exc:  # a drawing bug must not cost the measurements: report them
            results.note("all", "chart", f"not drawn: {describe(exc)}")
    report = write_report(results, checks, out, chart)
    print(terminal_report(results, checks))
    print(f"report: {report}" + (f"\nchart: {chart}" if chart else ""))
    return 0 if results.records else 1


async def _run_target(
    url: str, plan: Plan, results: Results, progress: Callable[[str], None]
) -> None:
    target = TargetRun(url, plan, results, progress)
    try:
        await target.run()
    except Exception as exc:
        results.note(target.backend, "lockyard", f"run aborted: {describe(exc)}")
        progress(f"[{target.backend}] run aborted: {describe(exc)}")


async def _run_backend(
    backend: str, out: Path, plan: Plan, results: Results, progress: Callable[[str], None]
) -> None:
    progress(f"[{backend}] starting its server")
    try:
        async with started_server(backend) as url:
            await _run_target(url, plan, results, progress)
    except BackendUnavailable as exc:
        results.note(backend, "server", f"skipped: {exc}")
        progress(f"[{backend}] skipped: {exc}")
