"""Operator replicas elect their leader through a Lease (``--leader-elect``): exactly one
reconciles, a SIGSTOPped leader is replaced within the lease duration plus one retry period and,
continued, exits without acting again; the same holds through an API server restart and a slow
network. "No two replicas act within one term" is proved from the API server's audit log
(``term_audit``): every write the operator made lands inside its writer's own term.

Short timings through the flags: a 6 s lease, a 3 s renew deadline, a try every 0.5 s.

Host processes, not pods: each replica gets its own short timings, is SIGSTOPped and continued
at chosen moments, and the API server is restarted under it; the election of the Deployment's
pods (both replicas, failover on delete and on SIGKILL) is in tests/node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import Operators, create_store, wait_condition
from term_audit import Stop, Timings, check_terms, read_writes

from lockyard.kube.api import KubeApi
from lockyard.kube.paths import leases_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.cluster.operator_process import OperatorProcess
from lockyard_dev.jepsen.toxiproxy import Toxiproxy, ToxiproxyServer
from lockyard_operator.leader import LOST_EXIT_CODE

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

LEASE = "lockyard-operator"
#: The margin between the renew deadline (the last moment a write may pass the gate) and the
#: lease (when a standby may take over) must cover a write's way from the gate to the API
#: server's receipt: 1 s was not enough beside two CPU hogs (a write received 1.96 s after its
#: gate). client-go's defaults leave 5 s (15 s lease, 10 s renew deadline).
LEASE_S, RENEW_S, RETRY_S = 6, 3.0, 0.5
#: Failover runs measured in the SIGSTOP test.
RUNS = 5


def election_flags(namespace: str, identity: str) -> list[str]:
    return [
        "--leader-elect",
        f"--leader-elect-resource-namespace={namespace}",
        f"--leader-elect-identity={identity}",
        f"--leader-elect-lease-duration={LEASE_S}",
        f"--leader-elect-renew-deadline={RENEW_S}",
        f"--leader-elect-retry-period={RETRY_S}",
    ]


class Replicas:
    """This test's operator replicas, by identity."""

    def __init__(self, operators: Operators, namespace: str) -> None:
        self.operators = operators
        self.namespace = namespace
        self.by_identity: dict[str, OperatorProcess] = {}
        #: When each replica was SIGSTOPped and SIGCONTinued (wall clock, as the audit log).
        self.stops: dict[str, list[Stop]] = {}
        #: The longest a continued replica's in-flight write may take to arrive (``Timings``).
        self.resume_grace_s = 0.0

    async def start(self, identity: str, kubeconfig: Path | None = None) -> OperatorProcess:
        process = await self.operators.start(
            *election_flags(self.namespace, identity), kubeconfig=kubeconfig
        )
        self.by_identity[identity] = process
        return process

    def alive(self) -> list[str]:
        return [i for i, p in self.by_identity.items() if p.running]


async def lease_of(kube: KubeApi, namespace: str) -> dict[str, Any] | None:
    return await kube.get_or_none(leases_path(namespace, LEASE))


async def wait_holder(
    kube: KubeApi, namespace: str, wanted: Callable[[str], bool], timeout: float = 60.0
) -> str:
    """The Lease's holder once ``wanted(holder)``; polled every 50 ms (the failover clock)."""
    deadline = time.monotonic() + timeout
    while True:
        lease = await lease_of(kube, namespace)
        holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
        if holder and wanted(holder):
            return holder
        if time.monotonic() > deadline:
            raise AssertionError(f"no wanted holder of {namespace}/{LEASE} after {timeout}s")
        await asyncio.sleep(0.05)


async def wait_exit(process: OperatorProcess, timeout: float) -> int | None:
    """The exit code once the process ends (``None`` if it runs on)."""
    assert process.process is not None
    deadline = time.monotonic() + timeout
    while process.process.poll() is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return process.process.returncode


async def api_round_trip(kube: KubeApi, namespace: str) -> float:
    slowest = 0.0
    for _ in range(5):
        started = time.monotonic()
        await lease_of(kube, namespace)
        slowest = max(slowest, time.monotonic() - started)
    return slowest


def slack_s(round_trip: float) -> float:
    """Room for scheduling and a few API calls on a loaded machine, from its measured speed."""
    return 0.5 + 6 * round_trip


async def assert_one_writer_per_term(
    plane: ControlPlane, replicas: Replicas, namespace: str
) -> str:
    """The audit check (see ``term_audit``); its summary."""
    await asyncio.sleep(1.0)  # the last audit entries reach the file
    writes = read_writes(plane.audit_log, replicas.by_identity, namespace)
    timings = Timings(LEASE_S, RENEW_S, replicas.stops, replicas.resume_grace_s)
    report = check_terms(writes, namespace, LEASE, timings)
    print(report.summary())
    print("\n".join(report.late_receipts))
    assert report.terms, "the audit log shows the election"
    assert not report.violations, "\n".join(report.violations[:20])
    return report.summary()


async def test_two_replicas_one_reconciles_and_hands_over_on_shutdown(
    kube: KubeApi, namespace: str, operators: Operators, installed: ControlPlane
) -> None:
    replicas = Replicas(operators, namespace)
    await replicas.start("alpha")
    await replicas.start("bravo")
    slack = slack_s(await api_round_trip(kube, namespace))
    leader_id = await wait_holder(kube, namespace, lambda h: h in replicas.by_identity)
    (standby_id,) = [i for i in replicas.by_identity if i != leader_id]
    leader, standby = replicas.by_identity[leader_id], replicas.by_identity[standby_id]

    names = ["one", "two", "three"]
    for name in names:
        await create_store(kube, namespace, name, {"memory": {}})
    for name in names:
        await wait_condition(kube, namespace, name, "Ready", "True")
    # The reconciler logs "<namespace>/<store>: connected to ..." for each store it serves.
    assert all(f"{namespace}/{name}:" in leader.log() for name in names)
    assert not any(f"{namespace}/{name}:" in standby.log() for name in names), (
        "only the leader reconciles"
    )
    assert "candidate for the Lease" in standby.log()

    # client-go's record, as `kubectl get lease` shows kube-controller-manager's.
    lease = await lease_of(kube, namespace)
    assert lease is not None
    spec = lease["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == (leader_id, LEASE_S)
    assert spec["leaseTransitions"] == 0
    assert lease["metadata"]["labels"] == {
        "lockyard.dev/kind": "election",
        "app.kubernetes.io/name": "lockyard-operator",
    }
    await asyncio.sleep(2 * RETRY_S)
    renewed = await lease_of(kube, namespace)
    assert renewed is not None
    assert renewed["spec"]["renewTime"] > spec["renewTime"]
    assert renewed["spec"]["acquireTime"] == spec["acquireTime"]

    # A clean shutdown releases the Lease once kopf has stopped: the standby takes over at its
    # next try, long before the Lease could have expired.
    terminated = time.monotonic()
    await asyncio.to_thread(leader.stop)
    exited = time.monotonic() - terminated
    assert leader.process is not None
    assert leader.process.returncode == 0, leader.tail()
    assert "released" in leader.log()
    await wait_holder(kube, namespace, lambda h: h == standby_id, timeout=10)
    took = time.monotonic() - terminated
    print(f"hand-over after SIGTERM: {took:.2f}s (the leader exited after {exited:.2f}s)")
    assert took < exited + RETRY_S + slack, "taken over at once, not after the Lease expired"
    lease = await lease_of(kube, namespace)
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] == 1
    await create_store(kube, namespace, "after", {"memory": {}})
    await wait_condition(kube, namespace, "after", "Ready", "True")
    assert f"{namespace}/after:" in standby.log()
    await assert_one_writer_per_term(installed, replicas, namespace)


@pytest.mark.timeout(600)
async def test_sigstopped_leader_is_replaced_and_never_acts_again(
    kube: KubeApi, namespace: str, operators: Operators, installed: ControlPlane
) -> None:
    """Each run: stop the leader (SIGSTOP) while it reconciles a burst of new stores; the
    standby takes over and finishes them; the old leader, continued, exits without acting; a
    fresh replica joins as the next standby (as the Deployment would restart it)."""
    replicas = Replicas(operators, namespace)
    await replicas.start("r0")
    await replicas.start("r1")
    failovers: list[float] = []
    exits: list[float] = []
    for run in range(RUNS):
        slack = slack_s(await api_round_trip(kube, namespace))
        # A stop can catch a reconciler thread between its gate and its socket: it finishes
        # that send as it resumes (8.1 s after its last renewal on a loaded run).
        replicas.resume_grace_s = max(replicas.resume_grace_s, slack)
        leader_id = await wait_holder(kube, namespace, lambda h: h in replicas.alive())
        leader = replicas.by_identity[leader_id]
        burst = [f"run{run}-{i}" for i in range(3)]
        await asyncio.gather(*(create_store(kube, namespace, n, {"memory": {}}) for n in burst))
        stopped_at = time.time()
        os.kill(leader.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            await wait_holder(
                kube, namespace, lambda h, old=leader_id: h != old, timeout=LEASE_S + 30
            )
            failover = time.monotonic() - stopped
            failovers.append(failover)
            for name in burst:
                await wait_condition(kube, namespace, name, "Ready", "True", timeout=60)
        finally:
            os.kill(leader.pid, signal.SIGCONT)
            replicas.stops.setdefault(leader_id, []).append((stopped_at, time.time()))
        continued = time.monotonic()
        code = await wait_exit(leader, timeout=15)
        exits.append(time.monotonic() - continued)
        print(
            f"run {run}: standby took over {failover:.2f}s after SIGSTOP; the old leader "
            f"exited {exits[-1]:.2f}s after SIGCONT (code {code})"
        )
        assert code == LOST_EXIT_CODE, leader.tail()
        assert "leadership of" in leader.log()
        assert failover <= LEASE_S + RETRY_S + slack, (failover, slack)
        await replicas.start(f"r{run + 2}")
    ordered = sorted(failovers)
    print(
        f"failover after SIGSTOP over {RUNS} runs: p50 {statistics.median(ordered):.2f}s, "
        f"max {ordered[-1]:.2f}s (bound: lease {LEASE_S}s + retry {RETRY_S}s); old leader "
        f"exited after SIGCONT: max {max(exits):.2f}s"
    )
    await assert_one_writer_per_term(installed, replicas, namespace)


@pytest.mark.timeout(600)
async def test_apiserver_restart_leaves_one_leader(
    kube: KubeApi, namespace: str, operators: Operators, installed: ControlPlane
) -> None:
    replicas = Replicas(operators, namespace)
    await replicas.start("alpha")
    await replicas.start("bravo")
    leader_id = await wait_holder(kube, namespace, lambda h: h in replicas.by_identity)
    leader = replicas.by_identity[leader_id]
    await create_store(kube, namespace, "before", {"memory": {}})
    await wait_condition(kube, namespace, "before", "Ready", "True")

    await asyncio.to_thread(installed.stop_apiserver)
    down = time.monotonic()
    try:
        # Longer than the lease: the leader's renew deadline passes with the API down.
        await asyncio.sleep(LEASE_S + 1)
    finally:
        await asyncio.to_thread(installed.start_apiserver)
    outage = time.monotonic() - down
    holder = await wait_holder(kube, namespace, lambda h: h in replicas.alive(), timeout=60)
    await create_store(kube, namespace, "after", {"memory": {}})
    await wait_condition(kube, namespace, "after", "Ready", "True", timeout=60)
    code = await wait_exit(leader, timeout=1)
    print(f"API down {outage:.1f}s; the leader {leader_id} exited with {code}; {holder} leads")
    # Its renewals failed for longer than the renew deadline: it stopped, and said why.
    assert code == LOST_EXIT_CODE, leader.tail()
    assert "no renewal confirmed" in leader.log() or "renew deadline passed" in leader.log()
    assert holder != leader_id
    assert replicas.alive() == [holder]
    await assert_one_writer_per_term(installed, replicas, namespace)


@pytest.fixture(scope="module")
def toxiproxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    with ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy")) as server:
        yield server


@pytest.fixture
def toxiproxy(toxiproxy_server: ToxiproxyServer) -> Iterator[Toxiproxy]:
    yield toxiproxy_server.api
    toxiproxy_server.api.reset()


def through(kubeconfig: Path, port: int, path: Path) -> Path:
    """``kubeconfig`` talking to the API through a proxy on ``port`` (TLS passes through)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def set_latency(toxiproxy: Toxiproxy, proxy: str, ms: int) -> None:
    """``ms`` each way (no jitter: every request, renewals included, is delayed alike)."""
    for toxic in toxiproxy.toxics(proxy):
        toxiproxy.remove_toxic(proxy, toxic["name"])
    for stream in ("upstream", "downstream"):
        toxiproxy.add_toxic(proxy, f"latency-{stream}", "latency", {"latency": ms}, stream=stream)


@pytest.mark.timeout(600)
async def test_slow_network_to_the_leader(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    installed: ControlPlane,
    toxiproxy: Toxiproxy,
    tmp_path: Path,
) -> None:
    """0.3 s each way: the leader keeps its term and keeps reconciling. 2 s each way: it cannot
    confirm a renewal within the renew deadline, stops there and exits; the standby, talking to
    the API directly, takes over; nothing the slow leader sent lands in the new term."""
    port = int(installed.server.rsplit(":", 1)[1])
    proxy = toxiproxy.create_proxy(f"api-{namespace}", port)
    slow_config = through(operators.kubeconfig, proxy.listen_port, tmp_path / "slow-kubeconfig")
    replicas = Replicas(operators, namespace)
    slow = await replicas.start("slow", kubeconfig=slow_config)
    await wait_holder(kube, namespace, lambda h: h == "slow")
    await replicas.start("direct")
    await create_store(kube, namespace, "fast", {"memory": {}})
    await wait_condition(kube, namespace, "fast", "Ready", "True")

    set_latency(toxiproxy, proxy.name, 300)
    await create_store(kube, namespace, "slowly", {"memory": {}})
    await wait_condition(kube, namespace, "slowly", "Ready", "True", timeout=60)
    await asyncio.sleep(2 * LEASE_S)
    assert slow.running, slow.tail()
    assert await wait_holder(kube, namespace, lambda h: True) == "slow"

    set_latency(toxiproxy, proxy.name, 2000)
    slowed = time.monotonic()
    await wait_holder(kube, namespace, lambda h: h == "direct", timeout=60)
    print(f"2 s latency each way: the standby led {time.monotonic() - slowed:.2f}s later")
    assert await wait_exit(slow, timeout=10) == LOST_EXIT_CODE, slow.tail()
    await create_store(kube, namespace, "after", {"memory": {}})
    await wait_condition(kube, namespace, "after", "Ready", "True", timeout=60)
    await assert_one_writer_per_term(installed, replicas, namespace)
