"""``lockyard-operator`` / ``python -m lockyard_operator``: run the operator.

    lockyard-operator --all-namespaces --leader-elect
    lockyard-operator --namespace team-a --namespace team-b --metrics-port 8080
    lockyard-operator --all-namespaces --leader-elect --bind-address "$POD_IP"

Credentials: in a pod, its service account; elsewhere ``$KUBECONFIG`` (or ``--kubeconfig``).

High availability: run replicas with ``--leader-elect``. They elect a leader through the Lease
``--leader-elect-resource-name`` in ``--leader-elect-resource-namespace`` (client-go's record
and timings, :mod:`lockyard.kube.lease_election`); only the leader runs kopf, and a leader
that loses its term exits (:mod:`lockyard_operator.leader`). Without ``--leader-elect`` the
operator runs standalone.

``--bind-address`` is where the metrics and health endpoints listen (every interface by
default). Replicas that share one network namespace (``hostNetwork``, one replica per node)
each bind their own node's address, given from the downward API as ``$(POD_IP)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import kopf

from lockyard.kube.config import current_namespace
from lockyard.kube.lease_election import ElectionTimings, LeaseElector
from lockyard_operator.gated_clients import connect_api, connect_election_api, gated_session
from lockyard_operator.handlers import post_event, register
from lockyard_operator.health import HealthServer
from lockyard_operator.kube import KubeApi
from lockyard_operator.leader import Leadership, default_identity, first_of
from lockyard_operator.metrics import Metrics, MetricsServer
from lockyard_operator.reconcile import Reconciler

logger = logging.getLogger("lockyard_operator")

ANNOTATION_PREFIX = "lockyard.dev"
FINALIZER = "lockyard.dev/finalizer"
DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTH_PORT = 8081
DEFAULT_BIND_ADDRESS = "0.0.0.0"
DEFAULT_LEASE_NAME = "lockyard-operator"
#: client-go's (and kube-controller-manager's) defaults.
DEFAULTS = ElectionTimings()
#: Labels of the election Lease, besides ``lockyard.dev/kind: election``.
LEASE_LABELS = {"app.kubernetes.io/name": "lockyard-operator"}


@dataclass(frozen=True)
class Election:
    """``--leader-elect``: the Lease, this replica's identity and the timings."""

    name: str
    #: ``None``: the pod's namespace, or the kubeconfig context's.
    namespace: str | None
    identity: str
    timings: ElectionTimings


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...]
    all_namespaces: bool
    metrics_port: int
    health_port: int
    bind_address: str
    election: Election | None
    workdir: Path | None
    verbose: bool
    debug: bool


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
        help="serve the liveness endpoint on this port at /healthz; 0 disables (%(default)s)",
    )
    parser.add_argument(
        "--bind-address",
        default=DEFAULT_BIND_ADDRESS,
        metavar="ADDRESS",
        help="the address the metrics and health endpoints listen on; in a pod, its IP from "
        "the downward API (%(default)s: every interface)",
    )
    election = parser.add_argument_group(
        "leader election", "replicas elect a leader through a coordination.k8s.io/v1 Lease"
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="only the holder of the election Lease reconciles; without it the operator runs "
        "standalone",
    )
    election.add_argument(
        "--leader-elect-resource-name",
        default=DEFAULT_LEASE_NAME,
        metavar="NAME",
        help="the election Lease (%(default)s)",
    )
    election.add_argument(
        "--leader-elect-resource-namespace",
        metavar="NAMESPACE",
        help="its namespace (default: the pod's, or the kubeconfig context's)",
    )
    election.add_argument(
        "--leader-elect-identity",
        metavar="ID",
        help="this replica's holderIdentity (default: <$POD_ID or hostname>_<uuid>)",
    )
    election.add_argument(
        "--leader-elect-lease-duration",
        type=int,
        default=DEFAULTS.lease_duration_s,
        metavar="SECONDS",
        help="a standby takes over this long after it last saw the leader renew (%(default)s)",
    )
    election.add_argument(
        "--leader-elect-renew-deadline",
        type=float,
        default=DEFAULTS.renew_deadline_s,
        metavar="SECONDS",
        help="the leader stops this long after the start of its last confirmed renewal; "
        "shorter than the lease duration (%(default)s)",
    )
    election.add_argument(
        "--leader-elect-retry-period",
        type=float,
        default=DEFAULTS.retry_period_s,
        metavar="SECONDS",
        help="how often the leader renews and a standby tries (%(default)s)",
    )
    # kopf peering is gone (see docs/operator.md); its flags still parse for one release, so
    # manifests written for it keep working: --peering NAME elects through the Lease NAME.
    parser.add_argument("--peering", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--priority", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peering-lifetime", type=int, help=argparse.SUPPRESS)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.kubeconfig:
        # kopf's login and our API client both read it from here.
        os.environ["KUBECONFIG"] = args.kubeconfig
    election: Election | None = None
    if args.leader_elect or args.peering:
        try:
            timings = ElectionTimings(
                lease_duration_s=args.leader_elect_lease_duration,
                renew_deadline_s=args.leader_elect_renew_deadline,
                retry_period_s=args.leader_elect_retry_period,
            )
        except ValueError as exc:
            parser.error(f"leader election: {exc}")
        name = args.leader_elect_resource_name
        if args.peering and not args.leader_elect:
            name = args.peering
        election = Election(
            name=name,
            namespace=args.leader_elect_resource_namespace,
            identity=args.leader_elect_identity or default_identity(),
            timings=timings,
        )
    return Options(
        namespaces=tuple(args.namespaces or ()),
        all_namespaces=bool(args.all_namespaces),
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        election=election,
        workdir=args.workdir,
        verbose=args.verbose,
        debug=args.debug,
    )


def url_host(address: str) -> str:
    """``address`` as the host part of a URL (an IPv6 address goes in brackets)."""
    return f"[{address}]" if ":" in address else address


def deprecated_flags(argv: Sequence[str]) -> list[str]:
    """The kopf peering flags among ``argv`` (they are accepted, and warned about)."""
    flags = ("--peering", "--priority", "--peering-lifetime")
    return [a for a in argv if a.split("=", 1)[0] in flags]


def operator_settings(options: Options) -> kopf.OperatorSettings:
    """kopf's settings: Lockyard's names for its marks, quiet events, no peering."""
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
    # One kopf at a time: the Lease election decides which (kopf's peering is not a lock).
    settings.peering.standalone = True
    # Watches are re-established now and then, so a silently broken stream cannot linger.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


async def serve(
    options: Options,
    api: KubeApi,
    metrics: Metrics,
    *,
    liveness: bool,
    login_session: Callable[[kopf.ConnectionInfo], kopf.AiohttpSession] | None = None,
) -> None:
    """Run kopf with the operator's handlers until it stops (SIGINT/SIGTERM: kopf's handlers)."""
    made_workdir = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="lockyard-operator-"))
    reconciler = Reconciler(api, metrics, post_event, workdir)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, api, session=login_session)
    endpoint = None
    if liveness and options.health_port:
        endpoint = f"http://{url_host(options.bind_address)}:{options.health_port}/healthz"
    try:
        await kopf.operator(
            registry=registry,
            settings=operator_settings(options),
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
            liveness_endpoint=endpoint,
            standalone=True,
        )
    finally:
        await reconciler.close()
        if made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


async def run_standalone(options: Options, metrics: Metrics) -> None:
    api = await KubeApi.connect()
    try:
        await serve(options, api, metrics, liveness=True)
    finally:
        await api.close()


async def run_elected(options: Options, election: Election, metrics: Metrics) -> None:
    """Stand by until this replica leads; then run kopf. Losing the term ends the process
    (:class:`~lockyard_operator.leader.Leadership`); SIGTERM ends kopf and releases the Lease."""
    namespace = election.namespace
    if namespace is None:
        namespace = await asyncio.to_thread(current_namespace)
    election_api = await connect_election_api(election.identity)
    elector = LeaseElector(
        election_api,
        namespace,
        election.name,
        election.identity,
        election.timings,
        labels=LEASE_LABELS,
    )
    leadership = Leadership(elector)
    api = await connect_api(election.identity, leadership.gate)
    health = None
    if options.health_port:
        health = HealthServer(leadership.status, options.health_port, options.bind_address)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        if health is not None:
            await health.start()
        acquiring = asyncio.create_task(leadership.acquire(), name="lockyard leader election")
        stopped = asyncio.create_task(stopping.wait(), name="lockyard stop signal")
        if await first_of(acquiring, stopped) is stopped:
            logger.info("stopped while standing by")
            return
        # Created before kopf starts: kopf cancels, when it stops, every task made after that.
        keeper = asyncio.create_task(leadership.keep(), name="lockyard leader renewal")
        session = functools.partial(gated_session, gate=leadership.gate, identity=election.identity)
        try:
            await serve(options, api, metrics, liveness=False, login_session=session)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await leadership.release()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if health is not None:
            await health.stop()
        await api.close()
        await election_api.close()


async def run(options: Options) -> None:
    """Run until SIGINT/SIGTERM."""
    metrics = Metrics()
    server = None
    if options.metrics_port:
        server = MetricsServer(metrics, options.metrics_port, options.bind_address)
    try:
        if server is not None:
            await server.start()
        if options.election is None:
            await run_standalone(options, metrics)
        else:
            await run_elected(options, options.election, metrics)
    finally:
        if server is not None:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    kopf.configure(verbose=options.verbose, debug=options.debug)
    scope = "all namespaces" if options.all_namespaces else ", ".join(options.namespaces)
    election = options.election
    if election is None:
        logger.info("starting: %s, standalone", scope)
    else:
        timings = election.timings
        logger.info(
            "starting: %s, leader election on the Lease %s/%s as %s "
            "(lease %ds, renew deadline %gs, retry %gs)",
            scope,
            election.namespace or "(own namespace)",
            election.name,
            election.identity,
            timings.lease_duration_s,
            timings.renew_deadline_s,
            timings.retry_period_s,
        )
    for flag in deprecated_flags(sys.argv[1:] if argv is None else argv):
        logger.warning("%s is deprecated: kopf peering is replaced by --leader-elect", flag)
    asyncio.run(run(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
