"""``make demo``: Lockyard end to end on a local Kubernetes control plane, in one command.

    python -m lockyard_dev.demo [--seconds N] [--workers N] [--kubeconfig PATH] [--host-processes]

On a machine that can run a node (root, cgroups, the node's packages and binaries:
``lockyard_dev.node.session.node_problems``) the operator and the workload run as pods on a
real node (:mod:`lockyard_dev.demo.on_node`). Otherwise, or with ``--host-processes`` or
``--kubeconfig``, it says why and runs them as host processes, as follows, saying so as it goes:

1. starts a local control plane (etcd, kube-apiserver, kube-controller-manager) from the
   binaries ``make controlplane`` builds, or uses ``--kubeconfig``'s cluster instead;
2. starts a Redis server on a free loopback port (a backend every process can share: the
   operator probes it, the workload locks on it, ``lockyard locks --verify`` asks it);
3. installs the CRDs (``crds/``), creates the namespace ``lockyard-demo``, runs the operator as
   a subprocess for that namespace (its log goes to a file), and applies a ``StateStore``
   ``orders`` on that Redis with lease mirroring on, then waits until it is Ready;
4. runs a small workload in this process: ``lockyard.connect_store("orders")``, mirroring as the
   binding says, and a few workers taking and releasing ``invoice-N`` locks;
5. every few seconds shows ``kubectl get statestores``, ``kubectl get leases -l
   app.kubernetes.io/managed-by=lockyard`` and ``lockyard locks -A --verify``, and a table of the
   workload's OpenTelemetry metrics and the operator's gauges for the store
   (:mod:`lockyard_dev.demo.telemetry_view`).

It runs until Ctrl-C, or for ``--seconds`` (``$DEMO_SECONDS``) seconds; either way it stops
everything it started (workload, operator, Redis, control plane) and exits 0 (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import lockyard
from lockyard.errors import LockTimeoutError, StateError
from lockyard.kube.api import KubeApi
from lockyard.kube.binding_reader import read_binding_secret
from lockyard.mirror import LeaseMirror, enable_lease_mirroring, maybe_mirror, mirror_of
from lockyard_dev.cluster.controlplane import ControlPlane, ControlPlaneError, find_binaries
from lockyard_dev.demo.on_node import run_on_node
from lockyard_dev.demo.store import APPLYING, NAMESPACE, STORE, demo_store
from lockyard_dev.demo.telemetry_view import showing_telemetry
from lockyard_dev.node.node import NodeError
from lockyard_dev.node.session import node_problems
from lockyard_dev.repository import RepositoryNotFound, repository_root
from lockyard_dev.servers.process import ServerStartError, free_port
from lockyard_dev.servers.redis import RedisServer

LOCKS = [f"invoice-{i}" for i in range(1, 7)]
READY_TIMEOUT_S = 120.0


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


class DemoError(Exception):
    pass


class Demo:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.kubeconfig: Path | None = args.kubeconfig
        self.kubectl_binary = str(find_binaries() / "kubectl")
        self.env = dict(os.environ)
        #: Ctrl-C or SIGTERM arrived: main() reports it and exits with 130.
        self.interrupted = False
        #: Set by the first signal while the workload runs: it stops as at the end of --seconds.
        self._stop = asyncio.Event()
        self._watching = False

    # -- helpers ---------------------------------------------------------------------------
    async def kubectl(self, *args: str, input_text: str | None = None) -> str:
        command = [self.kubectl_binary, "--kubeconfig", str(self.kubeconfig), *args]
        result = await asyncio.to_thread(
            subprocess.run, command, input=input_text, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    async def show(self, title: str, command: list[str]) -> None:
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, env=self.env, timeout=60,
            check=False,
        )  # fmt: skip
        print(f"\n$ {title}", flush=True)
        print((result.stdout + result.stderr).rstrip() or "(nothing)", flush=True)

    async def show_state(self) -> None:
        kubectl = [self.kubectl_binary, "--kubeconfig", str(self.kubeconfig)]
        await self.show(
            f"kubectl get statestores -n {NAMESPACE}",
            [*kubectl, "get", "statestores", "-n", NAMESPACE],
        )
        selector = "app.kubernetes.io/managed-by=lockyard"
        await self.show(
            f"kubectl get leases -n {NAMESPACE} -l {selector}",
            [*kubectl, "get", "leases", "-n", NAMESPACE, "-l", selector],
        )
        # --verify: these workers hold each lock for 1-4 s, and on a loaded machine the Leases
        # can lag by seconds; the backend's own answer shows every lock held right now (a held
        # lock whose Lease is not written yet is "missing"), as an operator checking would.
        await self.show(
            "lockyard locks -A --verify",
            [sys.executable, "-m", "lockyard.cli.main", "locks", "-A", "--verify"],
        )
        print(flush=True)

    # -- steps -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def cluster(self) -> AsyncIterator[None]:
        if self.kubeconfig is not None:
            say(f"using the cluster of {self.kubeconfig}")
            yield
            return
        plane = ControlPlane(self.workdir / "cluster")
        say(f"starting a local Kubernetes control plane (binaries: {plane.bin_dir})")
        started = time.monotonic()
        try:
            await asyncio.to_thread(plane.start)
            self.kubeconfig = plane.kubeconfig
            say(f"control plane ready at {plane.server} in {time.monotonic() - started:.0f}s "
                f"(export KUBECONFIG={plane.kubeconfig} to look around)")  # fmt: skip
            yield
        finally:
            say("stopping the control plane")
            await asyncio.to_thread(plane.stop)

    @contextlib.asynccontextmanager
    async def redis(self) -> AsyncIterator[RedisServer]:
        say("starting Redis on a free loopback port")
        try:
            server = RedisServer(self.workdir / "redis")
            await asyncio.to_thread(server.start)
        except ServerStartError as exc:
            raise DemoError(f"cannot start Redis ({exc}); run `make system-deps`") from exc
        try:
            say(f"Redis ready on 127.0.0.1:{server.port}")
            yield server
        finally:
            say("stopping Redis")
            await asyncio.to_thread(server.remove)

    async def install_crds(self) -> None:
        try:
            folder = repository_root() / "crds"
        except RepositoryNotFound:  # an installed lockyard_dev: generate them from the models
            folder = self.workdir / "crds"
        if not (folder / "statestores.lockyard.dev.yaml").is_file():
            folder = self.workdir / "crds"
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "lockyard_operator.crd", "--out", str(folder)],
                check=True, capture_output=True,
            )  # fmt: skip
        files = sorted(p for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
        say(f"installing the CRDs: {', '.join(p.name for p in files)}")
        for path in files:
            await self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        await self.kubectl(
            "wait", "--for", "condition=Established", "crd/statestores.lockyard.dev",
            "--timeout=60s",
        )  # fmt: skip
        namespaces = await self.kubectl("get", "namespaces", "-o", "name")
        if f"namespace/{NAMESPACE}" not in namespaces.split():
            await self.kubectl("create", "namespace", NAMESPACE)
        say(f"namespace {NAMESPACE} ready")

    @contextlib.asynccontextmanager
    async def operator(self) -> AsyncIterator[None]:
        log_path = self.workdir / "operator.log"
        say(f"starting the operator for namespace {NAMESPACE} (log: {log_path})")
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lockyard_operator", "--namespace", NAMESPACE,
                "--metrics-port", str(port), "--bind-address", "127.0.0.1", "--health-port", "0",
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                # Its own session: Ctrl-C is ours to handle, then we stop it in order.
                start_new_session=True,
            )  # fmt: skip
        self.operator_process = process
        self.operator_log = log_path
        try:
            yield
        finally:
            say("stopping the operator")
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()

    async def apply_store(self, redis: RedisServer) -> None:
        store = demo_store(redis.port)
        say(APPLYING)
        await self.kubectl("apply", "-f", "-", input_text=json.dumps(store))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            obj = json.loads(await self.kubectl("get", "statestore", STORE, "-n", NAMESPACE,
                                                "-o", "json"))  # fmt: skip
            conditions = (obj.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is not None and ready.get("status") == "True":
                say(f"StateStore {NAMESPACE}/{STORE} is Ready ({ready.get('message', '')})")
                return
            if self.operator_process.returncode is not None:
                tail = self.operator_log.read_text(errors="replace").splitlines()[-20:]
                raise DemoError("the operator exited:\n" + "\n".join(tail))
            if time.monotonic() > deadline:
                raise DemoError(f"StateStore not Ready after {READY_TIMEOUT_S:.0f}s: {ready}")
            await asyncio.sleep(0.5)

    async def mirror(self, connection: lockyard.Connection) -> LeaseMirror:
        """The handle's mirror: connect_store's own, else one as the binding asks."""
        mirror = mirror_of(connection)
        if mirror is not None:
            return mirror
        api = await KubeApi.connect(str(self.kubeconfig))
        try:
            data = await read_binding_secret(api, NAMESPACE, STORE)
        finally:
            await api.close()
        # No api_client: the mirror makes its own from $KUBECONFIG and closes it with itself.
        mirror = maybe_mirror(connection, data, store_name=STORE, namespace=NAMESPACE)
        if mirror is None:
            say("the binding does not ask for lease mirroring; mirroring anyway for the demo")
            mirror = enable_lease_mirroring(connection, STORE, NAMESPACE)
        return mirror

    async def worker(self, connection: lockyard.Connection, number: int) -> None:
        rng = random.Random(number)
        while True:
            name = rng.choice(LOCKS)
            try:
                async with connection.locks.hold(name, ttl=10, timeout=3) as guard:
                    say(f"worker-{number} holds {name} (fencing token {guard.fencing_token})")
                    await asyncio.sleep(rng.uniform(1.0, 4.0))
            except LockTimeoutError:
                continue
            except StateError as exc:
                say(f"worker-{number}: {exc}")
            await asyncio.sleep(rng.uniform(0.2, 1.0))

    async def workload(self) -> None:
        say(f"workload: lockyard.connect_store({STORE!r}, {NAMESPACE!r})")
        connection = await lockyard.connect_store(STORE, NAMESPACE)
        mirror: LeaseMirror | None = None
        try:
            mirror = await self.mirror(connection)
            say(f"workload connected to {connection.backend}; mirroring locks into Leases "
                f"of namespace {mirror.namespace}")  # fmt: skip
            workers = [
                asyncio.create_task(self.worker(connection, n), name=f"demo-worker-{n}")
                for n in range(1, self.args.workers + 1)
            ]
            try:
                await self.watch_loop()
            finally:
                say("stopping the workload (its locks are released)")
                for task in workers:
                    task.cancel()
                ended = await asyncio.gather(*workers, return_exceptions=True)
                for task, outcome in zip(workers, ended, strict=True):
                    if isinstance(outcome, Exception):  # a worker that stopped before its time
                        say(f"{task.get_name()} had stopped: {outcome!r}")
        finally:
            await connection.close()  # flushes and stops the mirror too
            if mirror is not None:
                say(f"lease mirror counters: {mirror.metrics.as_dict()}")

    async def watch_loop(self) -> None:
        seconds = self.args.seconds
        ends = None if not seconds else time.monotonic() + seconds
        self._watching = True
        say("workload running; " + (f"stopping in {seconds:g}s" if ends else "Ctrl-C stops"))
        if await self.stop_requested(within=min(2.0, seconds or 2.0)):
            return
        while True:
            await self.show_state()
            if ends is not None and time.monotonic() >= ends:
                return
            pause = self.args.show_every
            if ends is not None:
                pause = min(pause, max(0.0, ends - time.monotonic()))
            if await self.stop_requested(within=pause):
                return

    async def stop_requested(self, *, within: float) -> bool:
        """Wait up to ``within`` seconds for Ctrl-C; whether it came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._stop.wait()
        return self._stop.is_set()

    def interrupt(self, main: asyncio.Task[None]) -> None:
        """Ctrl-C or SIGTERM. While the workload runs, the first one ends it the way --seconds
        does (no cancellation that a step under way could lose); before that, or the second
        time, the step under way is cancelled and everything started so far is stopped."""
        if not self.interrupted and self._watching:
            say("interrupted: stopping everything it started")
            self._stop.set()
        else:
            say("interrupted: cancelling the step under way and stopping what it started")
            main.cancel()
        self.interrupted = True

    async def run(self) -> None:
        # The loop's own handlers, not asyncio.run's: a signal wakes the loop at once (through
        # its wakeup fd), and the first one stops the workload without a cancellation.
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.interrupt, main)
        try:
            await self.run_steps()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def run_steps(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.cluster())
            assert self.kubeconfig is not None
            self.env["KUBECONFIG"] = str(self.kubeconfig)
            os.environ["KUBECONFIG"] = str(self.kubeconfig)  # for connect_store in-process
            redis = await stack.enter_async_context(self.redis())
            await self.install_crds()
            await stack.enter_async_context(self.operator())
            await self.apply_store(redis)
            every = self.args.show_every
            async with showing_telemetry(self.metrics_url, NAMESPACE, STORE, every=every):
                await self.workload()
            say(f"deleting StateStore {NAMESPACE}/{STORE}")
            await self.kubectl("delete", "statestore", STORE, "-n", NAMESPACE, "--wait=true",
                               "--timeout=30s")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lockyard_dev.demo",
        description="Run Lockyard end to end on a local control plane (make demo).",
    )
    default_seconds = float(os.environ.get("DEMO_SECONDS") or 0)
    parser.add_argument(
        "--seconds",
        type=float,
        default=default_seconds,
        help="stop after this many seconds of workload (default: $DEMO_SECONDS, else until Ctrl-C)",
    )
    parser.add_argument("--workers", type=int, default=3, help="lock-taking workers (3)")
    parser.add_argument(
        "--show-every", type=float, default=6.0, help="seconds between state displays (6)"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this cluster instead of starting a local control plane (host processes)",
    )
    parser.add_argument(
        "--host-processes",
        action="store_true",
        help="run the operator and the workload as host processes even where a node could run",
    )
    return parser


def can_run_a_node(args: argparse.Namespace) -> bool:
    """Whether to run on a node; if not because of the machine, say why and how to fix it."""
    if args.kubeconfig is not None or args.host_processes:
        return False
    problems = node_problems()
    if problems is None:
        return True
    say(f"cannot run a Kubernetes node on this machine: {problems}")
    say("to see the operator and the workload as pods: run as root on a machine with cgroups "
        "(v2 or v1), then `make system-deps node` (see docs/node.md)")  # fmt: skip
    say("running the operator and the workload as HOST PROCESSES instead (no kubelet, no pods)")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="lockyard-demo-") as folder:
            if can_run_a_node(args):
                run_on_node(Path(folder), say, seconds=args.seconds, show_every=args.show_every)
            else:
                demo = Demo(args, Path(folder))
                try:
                    asyncio.run(demo.run())
                except asyncio.CancelledError:
                    if not demo.interrupted:
                        raise
                if demo.interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        say("interrupted; everything it started is stopped")
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"demo: error: {exc}: {exc.stderr}", file=sys.stderr)
        return 1
    except (DemoError, ControlPlaneError, StateError, NodeError, ServerStartError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    say("done; everything it started is stopped")
    return 0
