"""``make demo`` on a real node (this machine can run one): the operator and the workload as
pods, what kubectl and ``lockyard locks -A`` show while it runs, and nothing left behind after
``--seconds`` or SIGTERM. (tests/k8s/leases/test_lease_demo.py runs the host-process fallback.)"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lockyard_dev.node.daemon import pids_mentioning

DEMO = [sys.executable, "-m", "lockyard_dev.demo"]
#: A node start (images cached), the operator's two replicas, the store, the workload pod.
BUDGET_S = 600


def _workdir(text: str) -> Path:
    """The demo's temporary folder, from the KUBECONFIG it tells the user to export."""
    found = re.search(r"export KUBECONFIG=(\S*/lockyard-demo-[^/]+)/", text)
    assert found, f"no KUBECONFIG in:\n{text}"
    return Path(found.group(1))


def _assert_nothing_left(workdir: Path) -> None:
    assert not workdir.exists(), f"{workdir} is left"
    assert not pids_mentioning(str(workdir)), f"processes naming {workdir} are left"


@pytest.mark.timeout(BUDGET_S + 60)
def test_demo_runs_the_operator_and_workload_as_pods() -> None:
    done = subprocess.run(
        [*DEMO, "--seconds", "6", "--show-every", "3"],
        capture_output=True, text=True, timeout=BUDGET_S, check=False,
    )  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    for line in [
        "demo: operator Deployment lockyard-system/lockyard-operator: 2 replicas Ready",
        "demo: StateStore lockyard-demo/orders is Ready",
        "demo: workload pod Ready and holding its locks",
        "$ kubectl get pods,statestores,leases -n lockyard-demo",
        "$ kubectl get pods,leases -n lockyard-system",
        "$ lockyard locks -A",
        "demo: done; everything it started is stopped",
    ]:
        assert line in text, f"{line!r} missing from:\n{text}"
    assert "cannot run a Kubernetes node" not in text
    assert "pod/orders-worker " in text  # the workload, as a pod
    assert "statestore.lockyard.dev/orders " in text
    assert "lease.coordination.k8s.io/lockyard-orders-invoice-1-" in text  # mirrored Leases
    assert "lease.coordination.k8s.io/lockyard-operator " in text  # the election
    # Both replicas Running, one per node (-o wide shows the node).
    replicas = [ln for ln in text.splitlines() if ln.startswith("pod/lockyard-operator-")]
    assert any(" 127.0.0.1 " in ln for ln in replicas), replicas
    assert any(" 127.0.0.2 " in ln for ln in replicas), replicas
    # lockyard locks -A -o wide: the lock, and the workload pod that holds it.
    held = r"lockyard-demo\s+orders\s+lock\s+invoice-1\s.*\slockyard-demo/orders-worker"
    assert re.search(held, text), text
    _assert_nothing_left(_workdir(text))


@pytest.mark.timeout(BUDGET_S + 60)
def test_sigterm_stops_everything_the_demo_started() -> None:
    demo = subprocess.Popen(
        [*DEMO, "--show-every", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        for line in demo.stdout:
            seen.append(line)
            if "Ctrl-C stops" in line:
                break
        assert any("Ctrl-C stops" in line for line in seen), "".join(seen)
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = "".join(seen) + rest
    assert demo.returncode == 130, text
    for line in [
        "demo: stopping: StateStore, workload and operator pods, nodes, control plane, Redis",
        "demo: node: removing StateStores and the operator, then stopping the node",
        "demo: stopping Redis",
        "demo: interrupted; everything it started is stopped",
    ]:
        assert line in text, f"{line!r} missing from:\n{text}"
    _assert_nothing_left(_workdir(text))
