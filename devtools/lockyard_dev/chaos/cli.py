"""``python -m lockyard_dev.chaos``: the command line behind ``make chaos``.

Runs the chosen scenarios in the order given: backend scenarios
(:mod:`~lockyard_dev.chaos.scenarios`, each starts and stops its own servers) and Kubernetes
scenarios (:mod:`~lockyard_dev.chaos.kube_scenarios`) on one local control plane started for the
first of them and stopped after the last. Prints a report per scenario and a summary table per
kind, and optionally writes every figure as JSON. Exit status: 0 when every scenario recovered
without a violation, 1 otherwise, 3 when a scenario could not be run (a server, a driver or the
control plane binaries are missing), 2 for bad flags.

The flags mean the same for both kinds: ``--outage`` is how long the server (or kube-apiserver)
stays down, ``--tasks``/``--connections``/``--hold-ms`` shape the workload (of
``apiserver-restart`` on the Kubernetes side), ``--operation-timeout`` is the store's,
``--warmup``/``--after`` frame the fault; ``--stores`` and ``--kills`` are ``operator-kill``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.chaos import backend_report, kube_result
from lockyard_dev.chaos.cluster import Cluster
from lockyard_dev.chaos.driver import ChaosResult, ScenarioUnavailable, run_scenario
from lockyard_dev.chaos.kube_result import KubeChaosResult, KubeChaosSettings, crashed
from lockyard_dev.chaos.kube_scenarios import KUBE_SCENARIOS
from lockyard_dev.chaos.scenarios import SCENARIOS
from lockyard_dev.servers.process import ServerStartError
from lockyard_dev.stress.cli import non_negative, positive, positive_int
from lockyard_dev.stress.figures import exit_code, write_figures

PROG = "python -m lockyard_dev.chaos"
#: Every scenario, backend ones first: the default run.
KNOWN = (*SCENARIOS, *KUBE_SCENARIOS)
DESCRIPTION = (
    "Kill, fail over or restart each backend's server under the stress workload and check that "
    "callers only see StateErrors within the timeout, that everything recovers on the same "
    "connections, and that nothing acknowledged is lost. Also stop kube-apiserver under the "
    "operator and lease-mirrored workloads, and kill the operator mid-reconcile, checking that "
    "everything recovers without a restart of the caller and that nothing is left half-written."
)


def scenario_list(text: str, known: Sequence[str] = KNOWN) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one scenario")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``make chaos``."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--scenarios",
        type=functools.partial(scenario_list, known=KNOWN),
        default=list(KNOWN),
        help=f"comma-separated (default: {','.join(KNOWN)})",
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
    parser.add_argument(
        "--stores",
        type=positive_int,
        default=KubeChaosSettings.stores,
        help="operator-kill: StateStores created at once (%(default)s)",
    )
    parser.add_argument(
        "--kills",
        type=positive_int,
        default=KubeChaosSettings.kills,
        help="operator-kill: SIGKILLs of the operator during the burst (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    return parser


def settings_from(args: argparse.Namespace) -> KubeChaosSettings:
    """The settings the flags of :func:`build_parser` ask for (a random seed unless given)."""
    return KubeChaosSettings(
        tasks=args.tasks,
        connections=args.connections,
        warmup_s=args.warmup,
        outage_s=args.outage,
        after_s=args.after,
        operation_timeout_s=args.operation_timeout,
        slack_s=args.slack,
        hold_ms=args.hold_ms,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
        stores=args.stores,
        kills=args.kills,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    backend, kube, skipped = asyncio.run(run_all(args.scenarios, settings))
    backend_skipped = {k: v for k, v in skipped.items() if k in SCENARIOS}
    kube_skipped = {k: v for k, v in skipped.items() if k not in SCENARIOS}
    if backend or backend_skipped:
        print(backend_report.format_summary(backend, backend_skipped))
    if kube or kube_skipped:
        print(kube_result.format_summary(kube, kube_skipped))
    results: list[ChaosResult | KubeChaosResult] = [*backend, *kube]
    if args.json is not None:
        command = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
        write_figures(args.json, command, "scenarios", results, skipped, seed=settings.seed)
    return exit_code(results, skipped)


async def run_all(
    names: Sequence[str], settings: KubeChaosSettings
) -> tuple[list[ChaosResult], list[KubeChaosResult], dict[str, str]]:
    backend: list[ChaosResult] = []
    kube: list[KubeChaosResult] = []
    skipped: dict[str, str] = {}
    last_kube = max((i for i, name in enumerate(names) if name in KUBE_SCENARIOS), default=-1)
    cluster: Cluster | None = None
    unavailable = ""
    try:
        for index, name in enumerate(names):
            print(f"-- {name}: starting", file=sys.stderr, flush=True)
            if name in SCENARIOS:
                try:
                    result = await run_scenario(SCENARIOS[name], settings)
                except ScenarioUnavailable as exc:
                    skipped[name] = str(exc)
                    print(f"-- {name}: not run: {skipped[name]}", file=sys.stderr, flush=True)
                    continue
                print(backend_report.format_result(result), flush=True)
                backend.append(result)
                continue
            if cluster is None and not unavailable:
                print("-- starting a local Kubernetes control plane", file=sys.stderr, flush=True)
                try:
                    cluster = await Cluster.start()
                except ScenarioUnavailable as exc:
                    unavailable = str(exc)
            try:
                if cluster is None:
                    raise ScenarioUnavailable(unavailable)
                kube_run = await KUBE_SCENARIOS[name].run(cluster, settings)
            except (ScenarioUnavailable, ServerStartError) as exc:
                skipped[name] = str(exc).splitlines()[0]
                print(f"-- {name}: not run: {skipped[name]}", file=sys.stderr, flush=True)
                continue
            except Exception as exc:  # a crash is a finding: report it, run the others
                kube_run = crashed(name, settings, exc)
            print(kube_result.format_result(kube_run), flush=True)
            kube.append(kube_run)
            if index == last_kube and cluster is not None:
                await cluster.close(keep=any(r.violations for r in kube))
                cluster = None
    finally:
        if cluster is not None:
            await cluster.close(keep=True)
    return backend, kube, skipped
