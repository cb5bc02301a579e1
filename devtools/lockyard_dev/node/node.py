"""`Node`: the test control plane plus one real node (containerd, runc, kubelet, kube-scheduler).

Contract:

- `Node.start` builds (or takes from the cache) the images, starts containerd and the control
  plane in parallel, imports the images, starts the kubelet and the scheduler, and returns when
  the node is Ready and untainted and the admission policies (`lockyard_dev.node.admission`)
  mutate pods and namespaces. Everything listens on loopback only; every pod is hostNetwork.
- `Node.stop` tears down in the order that leaves nothing behind: custom resources first (their
  finalizers need the operator), then workloads and pods (so the kubelet unmounts their
  volumes), the scheduler and kubelet, leftover containers and shims, containerd, the control
  plane; then every mount under the run folder, the host paths and cgroups the node created,
  and the run folder when it made it. Idempotent; `stop` after a failed `start` cleans up too.
- A start that fails raises `NodeError` with the failing component's log tail, after stopping
  what had started; the run folder is kept then, for its logs.
- `check_host` says what this machine lacks (root, cgroups, packages, binaries) in one message
  instead of a hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lockyard_dev.cluster.controlplane import (
    ControlPlaneError,
    cache_dir,
    find_binaries,
)
from lockyard_dev.node import admission
from lockyard_dev.node.configs import (
    CNI_LOOPBACK,
    RUNC,
    NodeLayout,
    write_cni_config,
    write_containerd_config,
    write_kubelet_config,
)
from lockyard_dev.node.controlplane import NodeControlPlane
from lockyard_dev.node.daemon import Daemon, kill_and_wait, pids_mentioning
from lockyard_dev.node.host import (
    DEVICE_PLUGIN_SOCKET,
    HARDCODED_PATHS,
    HostPaths,
    cgroup_dirs,
    make_cgroup_root,
    mounts_below,
    one_kubelet_starting,
    remove_cgroups,
    unmount_below,
)
from lockyard_dev.node.image_store import ImageStore
from lockyard_dev.node.images import NodeImages, build_images
from lockyard_dev.node.progress import Say, quiet
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.process import free_port

NODE_IP = "127.0.0.1"
NODE_BINARIES = ("kubelet", "kube-scheduler")
HOST_COMMANDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "buildah": "buildah",
    "mmdebstrap": "mmdebstrap",
    "gcc": "gcc",
}
# Written at start: the host paths that did not exist, for `reap_leftovers` after a crash.
HOST_RECORD = "host-paths-created"
_READY_TIMEOUT = 120.0
_DELETE_TIMEOUT = "60s"


class NodeError(RuntimeError):
    """The node cannot start on this machine, or failed to; the message says why."""


def check_host(bin_dir: Path | None = None) -> list[str]:
    """What this machine lacks to run a node; empty when nothing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: containerd, runc and the kubelet need root")
    if (
        not any(Path("/sys/fs/cgroup", c).is_dir() for c in ("memory", "cpu"))
        and not Path("/sys/fs/cgroup/cgroup.controllers").is_file()
    ):
        problems.append("no cgroup hierarchy mounted at /sys/fs/cgroup")
    missing = sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if shutil.which(cmd) is None})
    if not CNI_LOOPBACK.is_file():
        missing.append("containernetworking-plugins")
    if not Path(RUNC).is_file() and "runc" not in missing:
        missing.append("runc")
    if missing:
        problems.append(f"Debian packages missing: {' '.join(missing)} (run `make system-deps`)")
    try:
        folder = bin_dir or find_binaries()
    except ControlPlaneError as exc:
        problems.append(str(exc))
    else:
        absent = [b for b in NODE_BINARIES if not os.access(folder / b, os.X_OK)]
        if absent:
            problems.append(f"{', '.join(absent)} missing from {folder}: run `make controlplane`")
    return problems


@dataclass
class Member:
    """One node of the cluster: its folder layout, containerd, kubelet and cgroup root."""

    layout: NodeLayout
    cgroup_root: str
    containerd: Daemon
    kubelet: Daemon | None = None

    @property
    def ip(self) -> str:
        return self.layout.ip

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.containerd, self.kubelet) if d is not None]


def cgroup_prefix(workdir: Path) -> str:
    """The name prefix of the cgroup roots of the nodes run in ``workdir``."""
    return f"lockyard-{hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:8]}-"


def run_cgroups(workdir: Path) -> list[Path]:
    """The cgroup roots (in every hierarchy) of the nodes run in ``workdir``."""
    prefix = cgroup_prefix(workdir)
    return [c for c in cgroup_dirs("") if c.name.startswith(prefix)]


def node_ip(index: int) -> str:
    """The loopback address (and node name) of the ``index``-th node: 127.0.0.1, 127.0.0.2, ..."""
    return f"127.0.0.{index + 1}"


class Node:
    """The control plane and ``nodes`` nodes (default one); see the module docstring.

    Extra nodes (``127.0.0.2``, ...) each get their own containerd, kubelet and cgroup root
    (two kubelets sharing one would kill each other's pods as orphans). Their pods share the
    host's network namespace with the first node's: a second node only helps pods that bind
    their node's address (``status.podIP``) instead of ``0.0.0.0``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        source: Path | None = None,
        images: NodeImages | None = None,
        bin_dir: Path | None = None,
        nodes: int = 1,
        say: Say = quiet,
    ) -> None:
        if not 1 <= nodes <= 9:
            raise ValueError("nodes must be 1 to 9")
        self.source = source or repository_root()
        self.node_count = nodes
        self._images = images
        self._bin_dir = bin_dir
        self._workdir_arg = workdir
        self.workdir: Path | None = None
        self._owns_workdir = False
        self.say = say
        self.plane: NodeControlPlane | None = None
        self.members: list[Member] = []
        self.scheduler: Daemon | None = None
        self._host = HostPaths(*HARDCODED_PATHS)
        self._made_cgroups: list[Path] = []
        self._image_store = ImageStore(cache_dir() / "node" / "containerd-root")
        #: Seconds each start-up step took, for reports and relative timing bounds.
        self.timings: dict[str, float] = {}

    # -- public surface --

    @property
    def kubeconfig(self) -> Path:
        return self._plane().kubeconfig

    @property
    def server(self) -> str:
        return self._plane().server

    @property
    def images(self) -> NodeImages:
        if self._images is None:
            raise NodeError("the node is not started")
        return self._images

    @property
    def name(self) -> str:
        """The first node's name (and InternalIP)."""
        return NODE_IP

    @property
    def names(self) -> list[str]:
        return [node_ip(i) for i in range(self.node_count)]

    @property
    def layout(self) -> NodeLayout | None:
        return self.members[0].layout if self.members else None

    @property
    def containerd(self) -> Daemon | None:
        return self.members[0].containerd if self.members else None

    @property
    def kubelet(self) -> Daemon | None:
        return self.members[0].kubelet if self.members else None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """The built kubectl as the cluster admin; raises CalledProcessError if ``check``."""
        return self._plane().kubectl(*args, input=input, check=check, timeout=timeout)

    def ctr(
        self, *args: str, check: bool = True, node: str = NODE_IP
    ) -> subprocess.CompletedProcess[str]:
        """containerd's ctr on ``node``'s socket, in the CRI namespace."""
        member = next((m for m in self.members if m.ip == node), None)
        if member is None:
            raise NodeError(f"no node {node} is running")
        return subprocess.run(
            ["ctr", "-a", str(member.layout.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def pids(self) -> dict[str, int]:
        found = dict(self.plane.pids()) if self.plane is not None else {}
        for member in self.members:
            for daemon in member.daemons():
                if daemon.pid is not None:
                    found[f"{daemon.name}@{member.ip}"] = daemon.pid
        if self.scheduler is not None and self.scheduler.pid is not None:
            found[self.scheduler.name] = self.scheduler.pid
        return found

    def daemons(self) -> list[Daemon]:
        """containerd and kubelet of every node, and the scheduler."""
        found = [d for m in self.members for d in m.daemons()]
        return found + ([self.scheduler] if self.scheduler is not None else [])

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start --

    def start(self) -> None:
        problems = check_host(self._bin_dir)
        if problems:
            raise NodeError("cannot run a node here:\n- " + "\n- ".join(problems))
        bin_dir = self._bin_dir or find_binaries()
        if self._images is None:
            began = time.monotonic()
            self._images = build_images(self.source, cache_dir(), self.say)
            self.timings["images"] = time.monotonic() - began
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="lockyard-node-"))
            self._owns_workdir = True
        else:
            self.workdir = self._workdir_arg
            self.workdir.mkdir(parents=True, exist_ok=True)
        self._host.remember(self.workdir / HOST_RECORD)
        try:
            self._start(bin_dir)
        except BaseException:
            self._owns_workdir = False  # keep the logs the error names
            self.stop()
            raise

    def _add_member(self, index: int) -> Member:
        ip = node_ip(index)
        folder = self._work() / f"node-{ip}"
        root = folder / "containerd" / "root"
        if index == 0:
            store = self._image_store.acquire()
            if store is None:
                self.say("the shared image store is in use by another node: importing anew")
            root = store or root
        layout = NodeLayout(folder, ip, free_port(), free_port(), root)
        write_containerd_config(layout)
        write_cni_config(layout)
        # Each kubelet gets its own cgroup root, so nodes (of this cluster or of another run)
        # never share a kubepods tree: a kubelet removes, and kills, pod cgroups it does not know.
        cgroup_root = f"/{cgroup_prefix(self._work())}{ip}"
        self._made_cgroups += make_cgroup_root(cgroup_root.lstrip("/"))
        member = Member(
            layout,
            cgroup_root,
            Daemon(
                "containerd",
                ["containerd", "--config", str(layout.containerd_config)],
                layout.logs / "containerd.log",
                # The store's lock stays held while this containerd runs, even if we die.
                keep_fds=self._image_store.lock_fds() if index == 0 else (),
            ),
        )
        self.members.append(member)
        member.containerd.start()
        return member

    def _start(self, bin_dir: Path) -> None:
        workdir = self._work()
        began = time.monotonic()
        self.plane = NodeControlPlane(workdir / "cluster", node_ips=self.names, bin_dir=bin_dir)
        self.say("starting containerd and the control plane")
        for index in range(self.node_count):
            self._add_member(index)
        plane_error: list[BaseException] = []
        plane_thread = threading.Thread(
            target=self._start_plane, args=(plane_error,), name="control-plane"
        )
        plane_thread.start()
        try:
            for member in self.members:
                self._wait("containerd's socket", member.layout.socket.exists, member.containerd)
            self.timings["containerd"] = time.monotonic() - began
            self._import_images()
        finally:
            plane_thread.join()
        if plane_error:
            raise NodeError(f"the control plane failed: {plane_error[0]}") from plane_error[0]
        plane = self._plane()
        kubelet_started = time.monotonic()
        for member in self.members:
            # The kubelet's ports are picked now, not with the layout: the image import in
            # between can take minutes on a busy machine, long enough for a port picked then
            # to be taken (as a client's ephemeral port, say) before the kubelet binds it.
            member.layout = dataclasses.replace(
                member.layout, kubelet_port=free_port(), healthz_port=free_port()
            )
            layout = member.layout
            serving = plane.kubelet_serving(member.ip)
            write_kubelet_config(
                layout, serving.cert_file, serving.key_file, plane.ca_file, member.cgroup_root
            )
            member.kubelet = Daemon(
                "kubelet",
                [
                    str(bin_dir / "kubelet"),
                    f"--config={layout.kubelet_config}",
                    f"--kubeconfig={plane.kubelet_kubeconfig(member.ip)}",
                    f"--root-dir={layout.kubelet / 'root'}",
                    f"--cert-dir={layout.kubelet / 'pki'}",
                    # The node's name and InternalIP (--node-ip refuses loopback addresses).
                    f"--hostname-override={member.ip}",
                    "--v=1",
                ],
                layout.logs / "kubelet.log",
            )
            with one_kubelet_starting() as listened:
                member.kubelet.start()
                self._wait(f"kubelet {member.ip} to listen on {DEVICE_PLUGIN_SOCKET}",
                           listened, member.kubelet)  # fmt: skip
        self.scheduler = Daemon(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={plane.scheduler_kubeconfig}",
                f"--authentication-kubeconfig={plane.scheduler_kubeconfig}",
                f"--authorization-kubeconfig={plane.scheduler_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
            workdir / "cluster" / "logs" / "kube-scheduler.log",
        )
        self.scheduler.start()
        for member in self.members:
            self._wait("the kubelet's healthz", functools.partial(_healthy, member), member.kubelet)
            self._wait(
                f"node {member.ip} to be Ready and untainted",
                functools.partial(self._node_schedulable, member.ip),
                member.kubelet,
            )
        self.timings["kubelet_ready"] = time.monotonic() - kubelet_started
        self.kubectl("apply", "-f", "-", input=admission.policies(plane.apiserver_port))
        self._wait("the admission policies to apply", self._policies_active, self.scheduler)
        self.timings["node_up"] = time.monotonic() - began
        self.say(
            f"node{'s' if self.node_count > 1 else ''} {', '.join(self.names)} Ready in "
            f"{self.timings['node_up']:.1f}s (kubelet Ready "
            f"{self.timings['kubelet_ready']:.1f}s after its start)"
        )

    def _start_plane(self, errors: list[BaseException]) -> None:
        started = time.monotonic()
        try:
            self._plane().start()
        except BaseException as exc:
            errors.append(exc)
        self.timings["control_plane"] = time.monotonic() - started

    def _import_images(self) -> None:
        started = time.monotonic()
        archives = self.images.archives()
        for member in self.members:
            if member.ip == NODE_IP and self._image_store.holds(archives):
                self.say("images already in the shared image store")
                continue
            for archive in archives:
                self.ctr("images", "import", str(archive), node=member.ip)
            if member.ip == NODE_IP:
                self._image_store.record(archives)
            self.say(f"imported {len(archives)} images into node {member.ip}")
        self.timings["image_import"] = time.monotonic() - started

    def _wait(self, what: str, ready: Callable[[], bool], daemon: Daemon | None) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while not ready():
            for component in self.daemons():
                if component.process is not None:
                    why = component.exited()
                    if why:
                        raise NodeError(f"waiting for {what}: {why}")
            if time.monotonic() > deadline:
                tail = daemon.tail() if daemon is not None else ""
                raise NodeError(f"{what}: not after {_READY_TIMEOUT:.0f}s\n{tail}")
            time.sleep(0.1)

    def _node_schedulable(self, name: str) -> bool:
        result = self.kubectl("get", "node", name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        node = json.loads(result.stdout)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        return ready and not node.get("spec", {}).get("taints")

    def _policies_active(self) -> bool:
        # The API server loads policies through an informer: probe with dry-run creates.
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "lockyard-node-policy-probe", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.1"}]},
        }
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "probe"}}
        for obj, check in (
            (pod, lambda o: o["spec"].get("hostNetwork") is True),
            (
                namespace,
                lambda o: (
                    o["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
                    == "privileged"
                ),
            ),
        ):
            result = self.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-",
                input=json.dumps(obj), check=False,
            )  # fmt: skip
            if result.returncode != 0 or not check(json.loads(result.stdout)):
                return False
        return True

    # -- stop --

    def stop(self) -> None:
        """Tear everything down in order; see the module docstring."""
        if self.plane is not None and self.plane.pids().get("kube-apiserver"):
            self._delete_workloads()
        if self.scheduler is not None:
            self.scheduler.stop()
        for member in self.members:
            if member.kubelet is not None:
                member.kubelet.stop()
        for member in self.members:
            if member.layout.socket.exists() and member.containerd.running:
                _remove_all_containers(member.layout.socket)
            member.containerd.stop()
            # Shims outlive containerd (they are in their own sessions).
            kill_and_wait(pids_mentioning(str(member.layout.socket)))
        if self.plane is not None:
            self.plane.stop()
        if self.workdir is not None:
            unmount_below(self.workdir)
        for member in self.members:
            # Images and snapshots: hundreds of MB that no later run reads (logs stay).
            for bulky in (member.layout.containerd / "root", member.layout.kubelet / "root"):
                shutil.rmtree(bulky, ignore_errors=True)
        if self._image_store.root is not None:
            unmount_below(self._image_store.root)
        self._image_store.release()
        self._host.remove_created()
        kill_cgroup_members(self._made_cgroups)
        remove_cgroups(self._made_cgroups)
        self._made_cgroups = []
        if self.workdir is not None and self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        self.plane = None
        self.members = []
        self.scheduler = None

    def _delete_workloads(self) -> None:
        # Custom resources first, while their operator may still run: kopf's finalizer would
        # otherwise hold each one (and a namespace holding one) forever.
        result = self.kubectl(
            "delete", "statestores.lockyard.dev", "--all", "--all-namespaces",
            "--wait=true", "--timeout=30s", check=False,
        )  # fmt: skip
        if result.returncode != 0 and "doesn't have a resource type" not in result.stderr:
            self.strip_finalizers("statestores.lockyard.dev")
        if any(m.kubelet is not None and m.kubelet.running for m in self.members):
            self.kubectl(
                "delete", "deployments,replicasets,statefulsets,daemonsets,jobs,pods",
                "--all", "--all-namespaces", "--wait=true", f"--timeout={_DELETE_TIMEOUT}",
                check=False,
            )  # fmt: skip

    def strip_finalizers(self, resource: str) -> None:
        """Remove the finalizers of every ``resource`` (when no operator is left to run them)."""
        listed = self.kubectl("get", resource, "-A", "-o", "json", check=False)
        if listed.returncode != 0:
            return
        for item in json.loads(listed.stdout).get("items", []):
            meta = item["metadata"]
            self.kubectl(
                "patch", resource, meta["name"], "-n", meta["namespace"], "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip

    # -- helpers --

    def _plane(self) -> NodeControlPlane:
        if self.plane is None:
            raise NodeError("the node is not started")
        return self.plane

    def _work(self) -> Path:
        if self.workdir is None:
            raise NodeError("the node is not started")
        return self.workdir


def _healthy(member: Member) -> bool:
    """Whether ``member``'s kubelet answers its healthz (no proxy for loopback)."""
    layout = member.layout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{layout.ip}:{layout.healthz_port}/healthz", timeout=2) as got:
            return bool(got.status == 200)
    except OSError:
        return False


def _remove_all_containers(socket: Path) -> None:
    def ctr(*args: str) -> str:
        return subprocess.run(
            ["ctr", "-a", str(socket), "-n", "k8s.io", *args],
            capture_output=True, text=True, check=False, timeout=120,
        ).stdout  # fmt: skip

    for task in ctr("tasks", "ls", "-q").split():
        ctr("tasks", "kill", "-s", "SIGKILL", task)
    for container in ctr("containers", "ls", "-q").split():
        ctr("tasks", "delete", "-f", container)
        ctr("containers", "delete", container)


def kill_cgroup_members(roots: list[Path]) -> None:
    """SIGKILL every process in the cgroup trees ``roots`` (the node's own roots only)."""
    pids: set[int] = set()
    for root in roots:
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    kill_and_wait(sorted(pids))


def reap_leftovers(workdir: Path) -> list[int]:
    """Clean up after a harness that died without `Node.stop` (killed, say): stop every
    process whose command line names ``workdir`` (kubelet and scheduler first, containers and
    shims before containerd, the control plane last), unmount what is under it, remove the host
    paths it had created and the kubelet's empty cgroups. The pids it stopped."""
    workdir = workdir.resolve()
    found = pids_mentioning(str(workdir))
    order = (
        "kubelet", "kube-scheduler", "containerd-shim", "containerd",
        "kube-controller-manager", "kube-apiserver", "etcd",
    )  # fmt: skip

    def rank(pid: int) -> int:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            return len(order)
        name = Path(command).name
        return next((i for i, n in enumerate(order) if name.startswith(n)), len(order))

    containers_removed = False
    for pid in sorted(found, key=rank):
        if rank(pid) >= order.index("containerd-shim") and not containers_removed:
            # While containerd runs: kill the containers through it (a killed shim would
            # leave its container running, re-parented to init).
            for socket in workdir.glob("node-*/containerd/containerd.sock"):
                _remove_all_containers(socket)
            containers_removed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        kill_and_wait([pid])
    # Whatever still runs in this run's cgroup roots is a container whose shim is gone (the
    # roots' names are unique to the run folder, so nothing else is in them).
    kill_cgroup_members(run_cgroups(workdir))
    unmount_below(workdir)
    HostPaths.from_record(workdir / HOST_RECORD).remove_created()
    remove_cgroups(run_cgroups(workdir))
    return found


def leftover_check(workdir: Path) -> Callable[[], list[str]]:
    """Call before a node starts in ``workdir``; the function it returns, called after the node
    stopped, lists what is left: processes naming the folder, mounts under it, host paths the
    node created, its cgroup roots. Tests assert that the list is empty."""
    existed = {p for p in HARDCODED_PATHS if p.exists()}

    def left() -> list[str]:
        found = []
        if pids_mentioning(str(workdir)):
            found.append(f"processes naming {workdir}: {pids_mentioning(str(workdir))}")
        if mounts_below(workdir):
            found.append(f"mounts: {mounts_below(workdir)}")
        created = [p for p in HARDCODED_PATHS if p.exists() and p not in existed]
        if created:
            found.append(f"host paths: {created}")
        if run_cgroups(workdir):
            found.append(f"cgroups: {run_cgroups(workdir)}")
        return found

    return left
