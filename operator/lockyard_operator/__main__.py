"""``lockyard-operator`` / ``python -m lockyard_operator``: run the operator.

    lockyard-operator --all-namespaces --peering lockyard-operator
    lockyard-operator --namespace team-a --namespace team-b --metrics-port 8080

Credentials: in a pod, its service account; elsewhere ``$KUBECONFIG`` (or ``--kubeconfig``).

High availability: run replicas with ``--peering NAME``. kopf's peering lets only the replica
with the highest priority work; the others stand by and take over once its keep-alive record
expires (``--peering-lifetime`` seconds after its last keep-alive). By default a replica's
priority falls with its start time, so the oldest replica leads and a replica that (re)starts
joins as a standby: a rolling restart never hands work back and forth. Without ``--peering``
the operator runs standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kopf

from lockyard_operator.handlers import post_event, register
from lockyard_operator.kube import KubeApi, KubeApiError, object_path
from lockyard_operator.metrics import Metrics, MetricsServer
from lockyard_operator.reconcile import Reconciler

logger = logging.getLogger("lockyard_operator")

ANNOTATION_PREFIX = "lockyard.dev"
FINALIZER = "lockyard.dev/finalizer"
DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTH_PORT = 8081
DEFAULT_PEERING_LIFETIME_S = 10
#: Priorities fall with start time (milliseconds), so older replicas outrank newer ones.
_PRIORITY_EPOCH_MS = 10**13


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...]
    all_namespaces: bool
    metrics_port: int
    health_port: int
    peering: str | None
    priority: int
    peering_lifetime: int
    workdir: Path | None
    verbose: bool
    debug: bool


def default_priority() -> int:
    """Lower for later starts (ties broken at random): the oldest replica leads."""
    started_ms = int(time.time() * 1000)
    return (_PRIORITY_EPOCH_MS - started_ms) * 1000 + random.randrange(1000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockyard-operator",
        description="Run the Lockyard operator (StateStores, lockyard.dev/v1alpha1).",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="serve this namespace (repeatable; globs like team-* allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="serve Prometheus metrics on this port at /metrics; 0 disables (%(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=DEFAULT_HEALTH_PORT,
        help="serve kopf's liveness endpoint on this port at /healthz; 0 disables (%(default)s)",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="take part in the kopf peering NAME (leader election between replicas); "
        "without it the operator runs standalone",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest works, the rest stand by (default: older "
        "replicas first)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=DEFAULT_PEERING_LIFETIME_S,
        metavar="SECONDS",
        help="how long a replica's keep-alive counts; a standby takes over this long "
        "after the leader's last one (%(default)s)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder for client files (TLS certificates) taken from Secrets "
        "(default: a private temporary folder)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="log everything")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    args = build_parser().parse_args(argv)
    if args.kubeconfig:
        # kopf's login and our API client both read it from here.
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.peering_lifetime < 2:
        build_parser().error("--peering-lifetime must be at least 2 seconds")
    return Options(
        namespaces=tuple(args.namespaces or ()),
        all_namespaces=bool(args.all_namespaces),
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        peering=args.peering,
        priority=args.priority if args.priority is not None else default_priority(),
        peering_lifetime=args.peering_lifetime,
        workdir=args.workdir,
        verbose=args.verbose,
        debug=args.debug,
    )


def operator_settings(options: Options) -> kopf.OperatorSettings:
    """kopf's settings: Lockyard's names for its marks, quiet events, short peering lifetime."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    # Annotations only: kopf's default also writes .status.kopf, which our schema would prune.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "lockyard-operator"
    settings.posting.event_name_prefix = "lockyard-"
    # The reconciler posts the events that matter; kopf's "handler succeeded" ones are noise.
    settings.posting.level = logging.WARNING
    settings.peering.lifetime = options.peering_lifetime
    settings.peering.priority = options.priority
    settings.peering.stealth = not options.debug
    # Watches are re-established now and then, so a silently broken stream cannot linger.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


async def ensure_peering(api: KubeApi, options: Options) -> None:
    """Create the peering object(s) kopf keeps keep-alives in, if they are missing.

    kopf expects them to exist; making them here spares a deployment step that would have to
    wait for the peering CRD to be served.
    """
    if options.peering is None:
        return
    body: dict[str, object] = {"apiVersion": "kopf.dev/v1", "metadata": {"name": options.peering}}
    if options.all_namespaces:
        targets = [(object_path("kopf.dev", "v1", "clusterkopfpeerings"), "ClusterKopfPeering")]
    else:
        # Patterns (team-*) name no namespace in particular: their peering objects are the
        # deployer's to create.
        targets = [
            (object_path("kopf.dev", "v1", "kopfpeerings", namespace), "KopfPeering")
            for namespace in options.namespaces
            if not any(c in namespace for c in "*?[!")
        ]
    for collection, kind in targets:
        try:
            await api.create(collection, {**body, "kind": kind})
            logger.info("created %s %s", kind, options.peering)
        except KubeApiError as exc:
            if not exc.conflict:
                logger.warning("cannot create %s %s: %s", kind, options.peering, exc)


async def run(options: Options) -> None:
    """Run until SIGINT/SIGTERM (kopf installs the handlers)."""
    api = await KubeApi.connect()
    await ensure_peering(api, options)
    made_workdir = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="lockyard-operator-"))
    metrics = Metrics()
    reconciler = Reconciler(api, metrics, post_event, workdir)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, api)
    server = MetricsServer(metrics, options.metrics_port) if options.metrics_port else None
    try:
        if server is not None:
            await server.start()
        liveness = f"http://0.0.0.0:{options.health_port}/healthz" if options.health_port else None
        await kopf.operator(
            registry=registry,
            settings=operator_settings(options),
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
            liveness_endpoint=liveness,
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=options.priority,
        )
    finally:
        await reconciler.close()
        if server is not None:
            await server.stop()
        await api.close()
        if made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    kopf.configure(verbose=options.verbose, debug=options.debug)
    logger.info(
        "starting: %s, peering %s (priority %d)",
        "all namespaces" if options.all_namespaces else ", ".join(options.namespaces),
        options.peering or "off",
        options.priority,
    )
    asyncio.run(run(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
