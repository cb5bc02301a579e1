"""The demo on a real node: the operator and a workload as pods, the way users run them.

    run_on_node(workdir, seconds=0, show_every=6.0)

Two nodes (127.0.0.1 and 127.0.0.2: kubelets, containerd, the control plane) come up, the
operator is installed with ``kubectl apply -k crds/ && kubectl apply -k deploy/`` (two replicas,
one per node, one leading), Redis runs on the host's loopback (every pod is hostNetwork and
reaches it at 127.0.0.1), a StateStore ``orders`` with lease mirroring is applied, and the
sample workload pod (``deploy/samples/workload``) holds locks through ``connect_store``. Every
``show_every`` seconds it prints ``kubectl get pods,statestores,leases`` and ``lockyard locks -A
-o wide`` (its POD column names the workload pod). Ctrl-C or SIGTERM (or ``seconds``) ends it;
the node's teardown removes the StateStore, the pods, the operator, the kubelets, containerd and
the control plane, and Redis stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from lockyard_dev.demo.store import APPLYING, NAMESPACE, STORE, demo_store
from lockyard_dev.node import Node
from lockyard_dev.node.deploy import OPERATOR_NAMESPACE, leader_pod, wait_for
from lockyard_dev.node.progress import Say
from lockyard_dev.node.session import operator_on_node, start_workload
from lockyard_dev.servers.redis import RedisServer

HELD = ["invoice-1", "invoice-2", "invoice-3"]
READY_TIMEOUT_S = 120.0


def run_on_node(
    workdir: Path,
    say: Say,
    *,
    seconds: float = 0.0,
    show_every: float = 6.0,
    during: Callable[[Node], None] | None = None,
) -> None:
    """Run the node demo in ``workdir`` until ``seconds`` pass (0: until Ctrl-C or SIGTERM,
    which raise KeyboardInterrupt here after everything is stopped). ``during`` is called once
    the workload holds its locks, for extra views."""
    with _sigterm_interrupts(), contextlib.ExitStack() as stack:
        say("starting Redis on a free loopback port (a host process; pods reach it on 127.0.0.1)")
        redis = stack.enter_context(_redis(workdir / "redis", say))
        say("starting two nodes (127.0.0.1, 127.0.0.2) and installing the operator as pods")
        node = stack.enter_context(operator_on_node(workdir, _progress(say)))
        try:
            _run(node, redis, seconds, show_every, say, during)
        finally:
            say("stopping: StateStore, workload and operator pods, nodes, control plane, Redis")


def _run(
    node: Node,
    redis: RedisServer,
    seconds: float,
    show_every: float,
    say: Say,
    during: Callable[[Node], None] | None,
) -> None:
    os.environ["KUBECONFIG"] = str(node.kubeconfig)  # for `lockyard locks -A`
    leader = leader_pod(node)
    say(
        f"operator Deployment {OPERATOR_NAMESPACE}/lockyard-operator: 2 replicas Ready, "
        f"{leader['metadata']['name'] if leader else '(none)'} leads "
        f"(export KUBECONFIG={node.kubeconfig} to look around)"
    )
    _apply_store(node, redis, say)
    say(f"starting the workload pod orders-worker (holds {', '.join(HELD)})")
    start_workload(node, NAMESPACE, STORE, HELD)
    wait_for(
        lambda: f"holding {HELD[-1]}" in _logs(node, "orders-worker"),
        READY_TIMEOUT_S,
        "the workload to hold its locks",
    )
    say("workload pod Ready and holding its locks")
    if during is not None:
        during(node)
    _watch(node, seconds, show_every, say)


def _watch(node: Node, seconds: float, show_every: float, say: Say) -> None:
    ends = None if not seconds else time.monotonic() + seconds
    say("running; " + (f"stopping in {seconds:g}s" if ends else "Ctrl-C stops"))
    while True:
        _show(f"kubectl get pods,statestores,leases -n {NAMESPACE}",
              node.kubectl("get", "pods,statestores,leases", "-n", NAMESPACE, "-o", "wide",
                           check=False))  # fmt: skip
        _show(f"kubectl get pods,leases -n {OPERATOR_NAMESPACE}",
              node.kubectl("get", "pods,leases", "-n", OPERATOR_NAMESPACE, "-o", "wide",
                           check=False))  # fmt: skip
        _show(
            "lockyard locks -A -o wide",
            subprocess.run(
                [sys.executable, "-m", "lockyard.cli.main", "locks", "-A", "-o", "wide"],
                capture_output=True, text=True, check=False, timeout=60,
            ),
        )  # fmt: skip
        print(flush=True)
        if ends is not None and time.monotonic() >= ends:
            return
        pause = show_every if ends is None else min(show_every, max(0.0, ends - time.monotonic()))
        time.sleep(pause)


def _show(title: str, result: subprocess.CompletedProcess[str]) -> None:
    print(f"\n$ {title}", flush=True)
    print((result.stdout + result.stderr).rstrip() or "(nothing)", flush=True)


def _apply_store(node: Node, redis: RedisServer, say: Say) -> None:
    node.kubectl("create", "namespace", NAMESPACE)
    store = demo_store(redis.port)
    say(APPLYING)
    node.kubectl("apply", "-f", "-", input=json.dumps(store))

    def ready() -> bool:
        got = node.kubectl(
            "get", "statestore", STORE, "-n", NAMESPACE,
            "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
        )  # fmt: skip
        return got.stdout == "True"

    wait_for(ready, READY_TIMEOUT_S, f"StateStore {NAMESPACE}/{STORE} to be Ready")
    say(f"StateStore {NAMESPACE}/{STORE} is Ready (reconciled by the leading operator pod)")


def _logs(node: Node, pod: str) -> str:
    return node.kubectl("logs", "-n", NAMESPACE, pod, check=False).stdout


@contextlib.contextmanager
def _redis(folder: Path, say: Say) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    say(f"Redis ready on 127.0.0.1:{server.port}")
    try:
        yield server
    finally:
        say("stopping Redis")
        server.remove()


def _progress(say: Say) -> Say:
    return lambda message: say(f"node: {message}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: the teardown that follows must not be interrupted by a second Ctrl-C or SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt once; later ones are ignored until the
    teardown is done."""
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
