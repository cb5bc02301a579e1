"""``python -m lockyard_dev.stress``: the command line behind ``make stress``.

Runs each backend in turn (starting and stopping its server), prints its table as soon as it is
done and a summary at the end, and optionally writes every figure as JSON. Exit status: 0 when
every backend ran without a violation, 1 on any violation, 3 when a backend could not be run
(its server or driver is missing), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lockyard_dev.servers.launch import BACKENDS, launch
from lockyard_dev.stress.figures import exit_code, write_figures
from lockyard_dev.stress.report import format_run, format_summary
from lockyard_dev.stress.run import RunResult, RunSettings, run_stress
from lockyard_dev.stress.workload import WorkloadSettings


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be more than zero")
        return value

    return parse


def positive_int(text: str) -> int:
    return int(positive(int)(text))


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or more")
    return value


def backend_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one backend")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(map(repr, unknown))}; known: {', '.join(BACKENDS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lockyard_dev.stress",
        description="Drive every backend with concurrent store operations and lock cycles, "
        "checking invariants as it goes (starts the servers itself).",
    )
    parser.add_argument(
        "--backends",
        type=backend_list,
        default=list(BACKENDS),
        help=f"comma-separated, run in this order (default: {','.join(BACKENDS)})",
    )
    parser.add_argument(
        "--duration", type=positive(float), default=60.0, help="seconds per backend (default 60)"
    )
    parser.add_argument(
        "--tasks", type=positive_int, default=64, help="concurrent tasks (default 64)"
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=4,
        help="connections the tasks share, like separate processes (default 4; memory: 1)",
    )
    parser.add_argument(
        "--operation-timeout",
        type=positive(float),
        default=5.0,
        help="the connections' operation timeout in seconds (default 5)",
    )
    parser.add_argument(
        "--slack",
        type=non_negative,
        default=0.5,
        help="how far past its timeout a failing operation may return (default 0.5 s)",
    )
    parser.add_argument(
        "--hold-ms",
        type=non_negative,
        default=2.0,
        help="longest stay inside a lock-protected resource (default 2 ms)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    settings = RunSettings(
        duration_s=args.duration,
        connections=args.connections,
        operation_timeout_s=args.operation_timeout,
        slack_s=args.slack,
        seed=seed,
        workload=WorkloadSettings(tasks=args.tasks, hold_ms=args.hold_ms),
    )
    results, skipped = asyncio.run(run_all(args.backends, settings))
    print(format_summary(results, skipped))
    if args.json is not None:
        command = " ".join(["python -m lockyard_dev.stress", *(argv or sys.argv[1:])])
        write_figures(args.json, command, "backends", results, skipped)
    return exit_code(results, skipped)


async def run_all(
    backends: Sequence[str], settings: RunSettings
) -> tuple[list[RunResult], dict[str, str]]:
    results: list[RunResult] = []
    skipped: dict[str, str] = {}
    for backend in backends:
        print(f"-- {backend}: starting its server", file=sys.stderr, flush=True)
        try:
            launched = await asyncio.to_thread(launch, backend)
        except Exception as exc:
            skipped[backend] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"-- {backend}: not run: {skipped[backend]}", file=sys.stderr, flush=True)
            continue
        try:
            url = launched.url(f"stress{secrets.token_hex(3)}", settings.operation_timeout_s)
            print(
                f"-- {backend}: {settings.workload.tasks} tasks for {settings.duration_s:g} s",
                file=sys.stderr,
                flush=True,
            )
            result = await run_stress(backend, url, settings)
        finally:
            await asyncio.to_thread(launched.close)
        print(format_run(result), flush=True)
        results.append(result)
    return results, skipped
