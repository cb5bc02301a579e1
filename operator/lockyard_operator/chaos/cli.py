"""``python -m lockyard_operator.chaos``: the command line behind ``make chaos``.

Takes the flags of ``python -m lockyard.chaos`` (plus ``--stores`` and ``--kills`` for
``operator-kill``) and scenario names of both kinds, and runs them in the order given: backend
scenarios through :mod:`lockyard.chaos`, Kubernetes scenarios on one local control plane started
for the first of them and stopped after the last. Prints a report per scenario and a summary
table per kind, and optionally writes every figure as JSON. Exit status as ``lockyard.chaos``: 0
when every scenario recovered without a violation, 1 otherwise, 3 when a scenario could not be
run (a server, a driver or the control plane binaries are missing), 2 for bad flags.

The shared flags mean the same for the Kubernetes scenarios: ``--outage`` is how long
kube-apiserver stays stopped, ``--tasks``/``--connections``/``--hold-ms`` shape the workload of
``apiserver-restart``, ``--operation-timeout`` is its store's, ``--warmup``/``--after`` frame
its fault.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from lockyard.chaos import cli as chaos_cli
from lockyard.chaos.driver import ChaosResult, ScenarioUnavailable
from lockyard.chaos.scenarios import SCENARIOS
from lockyard.stress.cli import positive_int
from lockyard.stress.figures import exit_code, write_figures
from lockyard.testing.servers.process import ServerStartError
from lockyard_operator.chaos.cluster import Cluster
from lockyard_operator.chaos.result import (
    KubeChaosResult,
    KubeChaosSettings,
    crashed,
    format_result,
    format_summary,
)
from lockyard_operator.chaos.scenarios import KUBE_SCENARIOS

PROG = "python -m lockyard_operator.chaos"


def build_parser() -> argparse.ArgumentParser:
    parser = chaos_cli.build_parser(
        known=(*SCENARIOS, *KUBE_SCENARIOS),
        prog=PROG,
        description=chaos_cli.DESCRIPTION
        + " Also stop kube-apiserver under the operator and lease-mirrored workloads, and kill "
        "the operator mid-reconcile, checking that everything recovers without a restart of "
        "the caller and that nothing is left half-written.",
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
    return parser


def settings_from(args: argparse.Namespace) -> KubeChaosSettings:
    base = chaos_cli.settings_from(args)
    return KubeChaosSettings(**asdict(base), stores=args.stores, kills=args.kills)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    backend, kube, skipped = asyncio.run(run_all(args.scenarios, settings))
    backend_skipped = {k: v for k, v in skipped.items() if k in SCENARIOS}
    kube_skipped = {k: v for k, v in skipped.items() if k not in SCENARIOS}
    if backend or backend_skipped:
        print(chaos_cli.format_summary(backend, backend_skipped))
    if kube or kube_skipped:
        print(format_summary(kube, kube_skipped))
    results: list[ChaosResult | KubeChaosResult] = [*backend, *kube]
    if args.json is not None:
        command = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
        write_figures(Path(args.json), command, "scenarios", results, skipped, seed=settings.seed)
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
            if name in SCENARIOS:
                done, missed = await chaos_cli.run_all([name], settings)
                backend += done
                skipped |= missed
                continue
            print(f"-- {name}: starting", file=sys.stderr, flush=True)
            if cluster is None and not unavailable:
                print("-- starting a local Kubernetes control plane", file=sys.stderr, flush=True)
                try:
                    cluster = await Cluster.start()
                except ScenarioUnavailable as exc:
                    unavailable = str(exc)
            try:
                if cluster is None:
                    raise ScenarioUnavailable(unavailable)
                result = await KUBE_SCENARIOS[name].run(cluster, settings)
            except (ScenarioUnavailable, ServerStartError) as exc:
                skipped[name] = str(exc).splitlines()[0]
                print(f"-- {name}: not run: {skipped[name]}", file=sys.stderr, flush=True)
                continue
            except Exception as exc:  # a crash is a finding: report it, run the others
                result = crashed(name, settings, exc)
            print(format_result(result), flush=True)
            kube.append(result)
            if index == last_kube and cluster is not None:
                await cluster.close(keep=any(r.violations for r in kube))
                cluster = None
    finally:
        if cluster is not None:
            await cluster.close(keep=True)
    return backend, kube, skipped
