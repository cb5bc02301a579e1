"""``python -m lockyard_dev.jepsen``: the command line behind ``make jepsen``.

Runs every chosen scenario on every chosen backend (each backend started once, behind its own
toxiproxy), prints each run and a table, writes the figures as JSON and each run's files under
``--out``. Exit status 0 when no run found a problem on a backend that promises
linearizability (Redis, PostgreSQL, DynamoDB), 1 otherwise, 2 for bad flags. Sentinel's
anomalies are reported, not failures: a failover may lose writes by design.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lockyard_dev.jepsen.report import describe, table, write_json
from lockyard_dev.jepsen.run import RunOptions, RunResult, run_backend
from lockyard_dev.jepsen.scenarios import SCENARIOS
from lockyard_dev.jepsen.targets import BACKENDS

PROG = "python -m lockyard_dev.jepsen"


def _names(known: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if not names or unknown:
            wrong = ", ".join(map(repr, unknown)) or "an empty list"
            raise argparse.ArgumentTypeError(f"unknown {wrong}; known: {', '.join(known)}")
        return names

    return parse


def _param(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record histories of concurrent Lockyard operations under network faults "
        "(toxiproxy) and check them for linearizability (porcupine).",
    )
    defaults = RunOptions()
    parser.add_argument("--backends", type=_names(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--scenarios", type=_names(tuple(SCENARIOS)), default=list(SCENARIOS))
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="seconds per run"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="client processes")
    parser.add_argument(
        "--processes", type=int, default=defaults.processes, help="streams per worker"
    )
    parser.add_argument("--rate", type=float, default=defaults.rate, help="operations/s in all")
    parser.add_argument("--operation-timeout", type=float, default=defaults.op_timeout_s)
    parser.add_argument("--lock-ttl-ms", type=int, default=defaults.lock_ttl_ms)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--check-timeout",
        type=float,
        default=defaults.check_timeout_s,
        help="checker budget per key, s",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run folders (default bench/results/jepsen-<time>)"
    )
    parser.add_argument(
        "--url-param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra store URL parameter, e.g. wait_replicas=1 (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 2 and "partition-one" in args.scenarios:
        print(f"{PROG}: partition-one needs --workers 2 or more", file=sys.stderr)
        return 2
    options = RunOptions(
        duration_s=args.duration,
        workers=args.workers,
        processes=args.processes,
        rate=args.rate,
        op_timeout_s=args.operation_timeout,
        lock_ttl_ms=args.lock_ttl_ms,
        seed=args.seed,
        check_timeout_s=args.check_timeout,
        url_params=tuple(args.url_param),
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("bench/results") / f"jepsen-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    results: list[RunResult] = []
    for backend in args.backends:
        for result in run_backend(backend, scenarios, options, out):
            results.append(result)
            print(describe(result), flush=True)
            write_json(results, args.json or out / "results.json")
    print()
    print(table(results))
    print(f"\nfiles: {out}")
    return 1 if any(r.problems for r in results) else 0
