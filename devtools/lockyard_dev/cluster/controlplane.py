"""A real local Kubernetes control plane for the operator's tests and the demo.

`ControlPlane` starts etcd, kube-apiserver and kube-controller-manager as child processes on
free loopback ports, in a working folder holding everything they need: a throwaway CA and the
certificates it signs (made with the ``openssl`` command, so no Python crypto dependency), the
service-account signing keys, etcd's data and one log file per component. There is no kubelet
and no scheduler: the cluster stores and serves objects, enforces RBAC, issues service-account
tokens, deletes namespaces and collects garbage by ownerReference, which is what an operator
needs from it. Pods never run.

Contract:

- The binaries come from `find_binaries()`: the folder ``make controlplane`` builds for the
  versions pinned in ``tools/controlplane/versions.env``, or ``$LOCKYARD_CONTROLPLANE_BIN``.
- `ControlPlane.start` returns once ``/readyz`` passes, the ``default`` namespace exists and the
  controller manager has created the ``default`` service account (so its controllers run). A
  component that fails to start raises `ControlPlaneError` carrying the tail of its log, after
  whatever had started is stopped again; the working folder is then kept for its logs.
- `ControlPlane.stop` stops only the processes this object started (SIGTERM, then SIGKILL after
  a grace period) and removes the working folder if it made a temporary one. It is idempotent.
- `ControlPlane.stop_apiserver` / `ControlPlane.start_apiserver` simulate an API outage: etcd
  and the controller manager keep running, the API server comes back on the same port with the
  same certificates, so clients configured earlier reconnect.
- The admin identity in `ControlPlane.kubeconfig` is a client certificate in ``system:masters``.
- `ControlPlane.audit_log` (JSON lines) records every write the operator's ServiceAccounts make
  (``system:serviceaccounts:lockyard-system``): who (user agent), what, when (server clock) and
  the object written with its ``resourceVersion``; Secrets with metadata only. The leader
  election tests prove from it that no two replicas act within one term.

The module is also a command line tool (``make cluster-up`` / ``make cluster-down``)::

    python -m lockyard_dev.cluster.controlplane up [--state-dir DIR] [--foreground]
    python -m lockyard_dev.cluster.controlplane down [--state-dir DIR]
    python -m lockyard_dev.cluster.controlplane run -- COMMAND [ARG ...]

``up`` starts a supervisor process in the background (``serve``, in a new session) that owns the
control plane, waits until it is ready and prints ``export KUBECONFIG=...``; ``up`` on a running
cluster only prints that line again. With ``--foreground`` the supervisor runs in the terminal
until Ctrl-C. ``down`` asks the supervisor to stop (SIGTERM), kills what it recorded if it does
not, and deletes the state folder (default ``~/.cache/lockyard/cluster``). ``run`` starts a
throwaway control plane, runs COMMAND with ``KUBECONFIG`` pointing at it (``make bench`` measures
Lease mirroring this way), stops the cluster and exits with COMMAND's status.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from lockyard_dev.repository import RepositoryNotFound, repository_root
from lockyard_dev.servers import orphans
from lockyard_dev.servers.process import (
    ServerHarness,
    ServerStartError,
    free_port,
    refuse_without_servers,
)
from lockyard_dev.servers.tls import KeyPair, make_ca, make_certificate, run_openssl

__all__ = [
    "BINARIES",
    "CONTROLLERS",
    "ControlPlane",
    "ControlPlaneError",
    "cache_dir",
    "find_binaries",
    "main",
    "pinned_versions",
    "versions_file",
]

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

# The controllers the operator's behaviour depends on; the rest (nodes, pods, volumes, jobs,
# ...) have nothing to act on without a kubelet and would only cost start-up time.
CONTROLLERS = (
    "namespace-controller",  # deleting a namespace deletes its contents
    "garbage-collector-controller",  # ownerReference cascading deletion
    "serviceaccount-controller",  # the `default` service account in every namespace
    "serviceaccount-token-controller",  # legacy token secrets, and the controllers' own tokens
    "clusterrole-aggregation-controller",  # fills the admin/edit/view roles tests bind to
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt, as on a real cluster
)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "lockyard-admin"

#: The pinned versions, relative to the repository root (shared with make and the build script).
VERSIONS_FILE = Path("tools") / "controlplane" / "versions.env"

#: Writes by the operator's ServiceAccounts, with the object written (its resourceVersion
#: orders them against the election Lease's writes); Secrets without their data.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:lockyard-system"]
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources: [{group: "", resources: ["secrets"]}]
  - level: RequestResponse
    userGroups: ["system:serviceaccounts:lockyard-system"]
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"""

_START_TIMEOUT = 120.0  # seconds; a cold kube-apiserver on two busy cores takes ~10-20
_STOP_GRACE = 15.0
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane cannot be found, started or stopped; the message says why."""


def cache_dir() -> Path:
    """Lockyard's cache root: ``$LOCKYARD_CACHE`` or ``~/.cache/lockyard`` (as the Makefile)."""
    override = os.environ.get("LOCKYARD_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "lockyard"


def versions_file() -> Path:
    """versions.env in the checkout (:func:`~lockyard_dev.repository.repository_root`)."""
    return repository_root() / VERSIONS_FILE


def pinned_versions(path: Path | None = None) -> dict[str, str]:
    """The ``KEY=value`` pairs of versions.env (default: the checkout's)."""
    path = versions_file() if path is None else path
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if sep:
                versions[key.strip()] = value.strip()
    return versions


def find_binaries() -> Path:
    """The folder holding etcd, kube-apiserver, kube-controller-manager and kubectl.

    ``$LOCKYARD_CONTROLPLANE_BIN`` wins; otherwise the cache folder ``make controlplane`` fills
    for the pinned versions. Raises `ControlPlaneError` naming what is missing and how to build it.
    """
    override = os.environ.get("LOCKYARD_CONTROLPLANE_BIN")
    if override:
        bin_dir = Path(override)
    else:
        try:
            versions_path = versions_file()
        except RepositoryNotFound as exc:
            raise ControlPlaneError(
                f"{exc}; or set LOCKYARD_CONTROLPLANE_BIN to a folder holding "
                + ", ".join(BINARIES)
            ) from exc
        if not versions_path.is_file():
            raise ControlPlaneError(
                f"{versions_path} not found: set LOCKYARD_CONTROLPLANE_BIN to a folder holding "
                + ", ".join(BINARIES)
            )
        versions = pinned_versions(versions_path)
        try:
            release = f"{versions['KUBERNETES_VERSION']}-{versions['ETCD_VERSION']}"
        except KeyError as exc:
            raise ControlPlaneError(f"{versions_path} does not pin {exc.args[0]}") from exc
        bin_dir = cache_dir() / "controlplane" / release / "bin"
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"Kubernetes control plane binaries missing from {bin_dir}: {', '.join(missing)}. "
            "Run `make controlplane` to build them (10-30 minutes the first time)."
        )
    return bin_dir


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


# --- certificates -----------------------------------------------------------------------------

# A cluster from `make cluster-up` may stay up for a long time: its certificates must outlive it.
_CERT_DAYS = 3650


@contextlib.contextmanager
def _pki_errors() -> Iterator[None]:
    try:
        yield
    except ServerStartError as exc:
        raise ControlPlaneError(f"cannot make the control plane's certificates: {exc}") from exc


class _Pki:
    """The cluster's CA, the certificates it signs and the service-account signing keys, made
    with the openssl command (:mod:`lockyard_dev.servers.tls`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sa_key = self.dir / "sa.key"
        self.sa_pub = self.dir / "sa.pub"
        with _pki_errors():
            self.ca = make_ca(self.dir, common_name="lockyard-local-ca", days=_CERT_DAYS)
            # RSA: what kubeadm uses; every token consumer supports RS256.
            run_openssl(
                "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", str(self.sa_key), cwd=self.dir,
            )  # fmt: skip
            run_openssl(
                "pkey", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub), cwd=self.dir
            )

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organization: str | None = None,
        server: bool = False,
        names: Sequence[str] = (),
    ) -> KeyPair:
        with _pki_errors():
            return make_certificate(
                self.ca,
                self.dir,
                name,
                common_name,
                server=server,
                names=names,
                organization=organization,
                days=_CERT_DAYS,
            )


def _kubeconfig(server: str, ca: Path, client: KeyPair, user: str) -> str:
    # JSON is YAML, so every kubeconfig reader accepts it.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lockyard", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(client.cert_file),
                    "client-key": str(client.key_file),
                },
            }
        ],
        "contexts": [{"name": "lockyard", "context": {"cluster": "lockyard", "user": user}}],
        "current-context": "lockyard",
    }
    return json.dumps(config, indent=2) + "\n"


# --- processes --------------------------------------------------------------------------------


@dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _child_environment() -> dict[str, str]:
    # etcd reads ETCD_* variables as flags, and a stray one would fight the command line.
    return {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}


class ControlPlane(ServerHarness):
    """etcd + kube-apiserver + kube-controller-manager on loopback; see the module docstring.

    ``workdir`` holds certificates, data, logs and the kubeconfig; by default a temporary folder
    that `stop` removes. A given ``workdir`` is kept (and reused: give a fresh one per cluster).
    """

    def __init__(self, workdir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        self._bin_dir = bin_dir if bin_dir is not None else find_binaries()
        self._workdir_arg = workdir
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._apiserver_port = 0
        self._etcd_port = 0
        self._etcd: _Component | None = None
        self._apiserver: _Component | None = None
        self._controller_manager: _Component | None = None
        self._admin: KeyPair | None = None
        self._ca: Path | None = None
        self._tls: ssl.SSLContext | None = None

    # -- public surface --

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("the control plane is not started")
        return self._workdir

    @property
    def kubeconfig(self) -> Path:
        """The admin (``system:masters``) kubeconfig."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        if not self._apiserver_port:
            raise ControlPlaneError("the control plane is not started")
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's certificate (and the client certificates)."""
        return self.workdir / "pki" / "ca.crt"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines; see `AUDIT_POLICY`)."""
        return self.workdir / "logs" / "audit.log"

    @property
    def service_account_issuer(self) -> str:
        return SERVICE_ACCOUNT_ISSUER

    def pids(self) -> dict[str, int]:
        """The process ids of the running components, by component name."""
        return {
            c.name: c.process.pid
            for c in (self._etcd, self._apiserver, self._controller_manager)
            if c is not None and c.process is not None and c.running
        }

    def start(self) -> None:
        """Start all three components and wait until the cluster is usable."""
        refuse_without_servers("the Kubernetes control plane")
        orphans.reap_once()
        if self._workdir is not None:
            raise ControlPlaneError("the control plane is already started")
        if self._workdir_arg is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="lockyard-k8s-"))
            self._owns_workdir = True
        else:
            self._workdir = self._workdir_arg
            self._workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare()
            self._start_component(self._require(self._etcd), self._etcd_healthy)
            self.start_apiserver()
            self._start_component(
                self._require(self._controller_manager), self._controller_manager_working
            )
        except BaseException:
            # Keep the folder, temporary or not: the error names a log file in it.
            self._owns_workdir = False
            self.stop()
            raise

    def close(self) -> None:
        """The same as `stop` (what leaving a ``with`` block calls)."""
        self.stop()

    def stop(self) -> None:
        """Stop every component this object started; remove its temporary folder."""
        for component in (self._controller_manager, self._apiserver, self._etcd):
            if component is not None:
                self._stop_component(component)
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None
        self._owns_workdir = False
        self._apiserver_port = 0

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (etcd and the controller manager keep running)."""
        self._stop_component(self._require(self._apiserver))

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on its port and wait until it is ready."""
        apiserver = self._require(self._apiserver)
        if apiserver.running:
            return
        self._start_component(apiserver, self._apiserver_ready)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # the name subprocess.run uses
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as the admin; raises CalledProcessError if ``check``."""
        return subprocess.run(
            [str(self._bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    # -- set-up --

    @staticmethod
    def _require(component: _Component | None) -> _Component:
        if component is None:
            raise ControlPlaneError("the control plane is not started")
        return component

    def _prepare(self) -> None:
        workdir = self.workdir
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        pki = _Pki(workdir / "pki")
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "127.0.0.1",
                "10.0.0.1",  # the `kubernetes` service, first address of the range
            ],
        )
        admin = pki.issue("admin", ADMIN_USER, organization="system:masters")
        # The identity whose bootstrap RBAC role lets it mint each controller's own token.
        controller_manager = pki.issue("controller-manager", "system:kube-controller-manager")
        self._admin = admin
        self._ca = pki.ca.cert_file

        etcd_client, etcd_peer, apiserver_port = (free_port() for _ in range(3))
        self._apiserver_port = apiserver_port
        self.kubeconfig.write_text(_kubeconfig(self.server, pki.ca.cert_file, admin, ADMIN_USER))
        controller_manager_kubeconfig = workdir / "controller-manager.kubeconfig"
        controller_manager_kubeconfig.write_text(
            _kubeconfig(
                self.server, pki.ca.cert_file, controller_manager, "system:kube-controller-manager"
            )
        )

        # etcd speaks plain HTTP on loopback only, as in controller-runtime's envtest: the
        # API server is its one client, and TLS there would only slow every test down.
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._etcd_port = etcd_client
        self._etcd = _Component(
            "etcd",
            [
                str(self._bin_dir / "etcd"),
                "--name=lockyard",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lockyard={peer_url}",
                # Throwaway data: durability would only cost fsync latency.
                "--unsafe-no-fsync=true",
            ],
            logs / "etcd.log",
        )
        audit_policy = workdir / "audit-policy.yaml"
        audit_policy.write_text(AUDIT_POLICY)
        self._apiserver = _Component(
            "kube-apiserver",
            [
                str(self._bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={apiserver_port}",
                # Given explicitly: with no default route the server cannot pick an address,
                # and no endpoints reconciler, as nothing could reach us through the service.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={serving.cert_file}",
                f"--tls-private-key-file={serving.key_file}",
                f"--client-ca-file={pki.ca.cert_file}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--cert-dir={pki.dir}",
                "--profiling=false",
                # Otherwise SIGTERM waits out the 60s request timeout for open watches to
                # drain; this way it tells clients to retry and exits within seconds.
                "--shutdown-send-retry-after=true",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={logs / 'audit.log'}",
                "--audit-log-format=json",
            ],
            logs / "kube-apiserver.log",
        )
        self._controller_manager = _Component(
            "kube-controller-manager",
            [
                str(self._bin_dir / "kube-controller-manager"),
                f"--kubeconfig={controller_manager_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller acts as its own service account, under the bootstrap RBAC
                # roles written for it, as on a kubeadm cluster.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca.cert_file}",
                # One instance, and a restart must not wait out a dead leader's lease.
                "--leader-elect=false",
                # Nothing scrapes or probes it: serving would only need another free port.
                "--secure-port=0",
                "--profiling=false",
            ],
            logs / "kube-controller-manager.log",
        )

    # -- processes --

    def _start_component(self, component: _Component, ready: Callable[[], bool]) -> None:
        with component.log.open("ab") as log:
            log.write(f"--- starting {component.name} at {time.ctime()}\n".encode())
            log.flush()
            component.process = subprocess.Popen(
                component.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_child_environment(),
                # Its own session: a Ctrl-C meant for the test runner must not kill the
                # cluster under it before the fixtures tear it down in order.
                start_new_session=True,
            )
        orphans.track(component.name, component.process.pid, component.log.parent)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            process = component.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                self._fail(component, f"exited with code {code} while starting")
            if ready():
                return
            if time.monotonic() > deadline:
                self._fail(component, f"not ready after {_START_TIMEOUT:.0f}s")
            time.sleep(0.2)

    def _fail(self, component: _Component, reason: str) -> None:
        raise ControlPlaneError(
            f"{component.name} {reason}; last lines of {component.log}:\n{_log_tail(component.log)}"
        )

    def _stop_component(self, component: _Component) -> None:
        process = component.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        orphans.forget(process.pid)
        component.process = None

    # -- readiness probes --

    def _etcd_healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self._etcd_port, timeout=2)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            body = response.read()
        except OSError:
            return False
        finally:
            connection.close()
        return response.status == 200 and json.loads(body).get("health") == "true"

    def _api_status(self, path: str) -> int:
        """GET ``path`` as the admin; the HTTP status, or 0 if the server is unreachable."""
        if self._tls is None:
            if self._ca is None or self._admin is None:
                raise ControlPlaneError("the control plane is not prepared")
            context = ssl.create_default_context(cafile=str(self._ca))
            context.load_cert_chain(str(self._admin.cert_file), str(self._admin.key_file))
            self._tls = context
        # http.client directly: urllib would honour HTTPS_PROXY for a loopback address.
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._apiserver_port, context=self._tls, timeout=5
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
        except OSError:
            return 0
        finally:
            connection.close()
        return response.status

    def _apiserver_ready(self) -> bool:
        return (
            self._api_status("/readyz") == 200
            and self._api_status("/api/v1/namespaces/default") == 200
        )

    def _controller_manager_working(self) -> bool:
        # Written by the serviceaccount controller: proof the controllers run and can write.
        return self._api_status("/api/v1/namespaces/default/serviceaccounts/default") == 200


# --- command line -----------------------------------------------------------------------------

_STATE_FILE = "state.json"
_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
_SERVE_MARKER = "lockyard_dev.cluster.controlplane"


def _process_alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and its command line contains ``marker`` (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads((state_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _supervisor_alive(state: dict[str, object]) -> bool:
    pid = state.get("supervisor")
    return isinstance(pid, int) and _process_alive(pid, _SERVE_MARKER)


def _serve(state_dir: Path) -> int:
    """Run a control plane in ``state_dir``/run until SIGTERM or SIGINT."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / _STATE_FILE
    state: dict[str, object] = {"supervisor": os.getpid()}
    state_file.write_text(json.dumps(state))
    plane = ControlPlane(state_dir / "run")
    started = time.monotonic()
    try:
        plane.start()
        state.update(
            kubeconfig=str(plane.kubeconfig),
            server=plane.server,
            components=plane.pids(),
            ready=True,
        )
        state_file.write_text(json.dumps(state, indent=2))
        print(f"control plane ready at {plane.server} in {time.monotonic() - started:.1f}s")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            running = plane.pids()
            dead = [name for name in _COMPONENTS if name not in running]
            if dead:
                print(f"stopping: {', '.join(dead)} exited; see {plane.workdir / 'logs'}")
                return 1
        return 0
    except ControlPlaneError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        plane.stop()
        state_file.unlink(missing_ok=True)


def _up(state_dir: Path, foreground: bool) -> int:
    state = _read_state(state_dir)
    if state is not None and _supervisor_alive(state):
        if state.get("ready"):
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        print(f"a control plane is starting in {state_dir}; try again shortly", file=sys.stderr)
        return 1
    find_binaries()  # fail here, with the clear message, rather than in the background
    shutil.rmtree(state_dir, ignore_errors=True)  # leftovers of a cluster that is gone
    if foreground:
        return _serve(state_dir)
    state_dir.mkdir(parents=True)
    log = state_dir / "supervisor.log"
    # posix_spawn, not Popen: the supervisor must outlive us, and a Popen object that is
    # collected while its child runs warns about it.
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-m", _SERVE_MARKER, "serve", "--state-dir", str(state_dir)],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    deadline = time.monotonic() + 3 * _START_TIMEOUT
    while time.monotonic() < deadline:
        exited, status = os.waitpid(pid, os.WNOHANG)
        if exited:
            print(f"the control plane failed to start:\n{_log_tail(log)}", file=sys.stderr)
            return os.waitstatus_to_exitcode(status) or 1
        state = _read_state(state_dir)
        if state is not None and state.get("ready"):
            logs = state_dir / "run" / "logs"
            print(f"control plane at {state['server']} (logs: {logs})", file=sys.stderr)
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    print(f"the control plane did not become ready; see {log}", file=sys.stderr)
    return 1


def _wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid, marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _down(state_dir: Path) -> int:
    state = _read_state(state_dir)
    if state is None:
        print(f"no control plane recorded in {state_dir}", file=sys.stderr)
        shutil.rmtree(state_dir, ignore_errors=True)
        return 0
    supervisor = state.get("supervisor")
    if isinstance(supervisor, int) and _process_alive(supervisor, _SERVE_MARKER):
        os.kill(supervisor, signal.SIGTERM)
        if not _wait_gone(supervisor, _SERVE_MARKER, 3 * _STOP_GRACE):
            os.kill(supervisor, signal.SIGKILL)
    # Whatever the supervisor could not stop, identified by pid and binary path.
    components = state.get("components")
    if isinstance(components, dict):
        for name, pid in components.items():
            if isinstance(pid, int) and _process_alive(pid, f"/{name}"):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state_dir, ignore_errors=True)
    print(f"control plane in {state_dir} stopped", file=sys.stderr)
    return 0


def _run(command: Sequence[str]) -> int:
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("run: name a command, e.g. `run -- python -m lockyard_dev.bench`", file=sys.stderr)
        return 2
    print("starting a throwaway control plane ...", file=sys.stderr)
    with ControlPlane() as plane:
        print(f"control plane at {plane.server}; running: {' '.join(command)}", file=sys.stderr)
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        try:
            # Ctrl-C reaches the command too (same process group); we wait for it, then stop.
            return subprocess.run(command, env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130
        except OSError as exc:
            print(f"run: cannot start {command[0]!r}: {exc}", file=sys.stderr)
            return 127


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lockyard_dev.cluster.controlplane",
        description="Run a local Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager) built by `make controlplane`.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start in the background and print the KUBECONFIG")
    up.add_argument("--foreground", action="store_true", help="run here until Ctrl-C")
    down = commands.add_parser("down", help="stop the control plane started by `up`")
    serve = commands.add_parser("serve", help="(internal) the supervisor `up` starts")
    run = commands.add_parser(
        "run", help="run a command against a throwaway control plane (KUBECONFIG is set for it)"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG ...]")
    for command in (up, down, serve):
        command.add_argument(
            "--state-dir", type=Path, default=cache_dir() / "cluster", help="%(default)s"
        )
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.argv)
        state_dir: Path = args.state_dir.expanduser().absolute()
        if args.command == "up":
            return _up(state_dir, args.foreground)
        if args.command == "down":
            return _down(state_dir)
        return _serve(state_dir)
    except ControlPlaneError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
