"""Leader election on a Lease (``lockyard.kube.lease_election``) against the real API server:
client-go's record and semantics, one leader among contenders, expiry judged on the
candidate's own clock, and a leader that stops at its renew deadline when the API server
stops answering or turns slow (toxiproxy in front of it)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from election_support import (
    TIMINGS,
    Connect,
    apiserver_port,
    proxied_kubeconfig,
    round_trip_s,
    slack_s,
)

from lockyard.clock import SYSTEM_CLOCK
from lockyard.kube.api import KubeApi
from lockyard.kube.lease_election import ElectionTimings, LeaseElector, Term
from lockyard.kube.paths import leases_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.jepsen.toxiproxy import Toxiproxy

pytestmark = [pytest.mark.slow]

#: client-go's MicroTime: RFC 3339, UTC, six fraction digits.
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEASE = "leader"


class SkewedClock:
    """The system's monotonic clock, and a wall clock ``offset`` seconds off."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()

    def wall(self) -> float:
        return SYSTEM_CLOCK.wall() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def latency(toxiproxy: Toxiproxy, proxy: str, name: str, ms: int, stream: str) -> None:
    toxiproxy.add_toxic(proxy, name, "latency", {"latency": ms}, stream=stream)


def candidate(api: KubeApi, namespace: str, identity: str, **kwargs: object) -> LeaseElector:
    return LeaseElector(api, namespace, LEASE, identity, TIMINGS, **kwargs)  # type: ignore[arg-type]


async def spec_of(api: KubeApi, namespace: str) -> dict[str, object]:
    lease = await api.get(leases_path(namespace, LEASE))
    return dict(lease["spec"])


def test_timings_follow_client_go() -> None:
    assert ElectionTimings() == ElectionTimings(15, 10.0, 2.0)
    with pytest.raises(ValueError, match="renew deadline"):
        ElectionTimings(4, 4.0, 0.5)  # the leader could act after its Lease expired
    with pytest.raises(ValueError, match="retry period"):
        ElectionTimings(4, 3.0, 3.0)
    with pytest.raises(ValueError, match="at least 1 second"):
        ElectionTimings(0, 0.5, 0.1)


async def test_the_lease_reads_like_client_go_s(connect: Connect, namespace: str) -> None:
    api = await connect()
    elector = candidate(api, namespace, "alpha")
    term = await elector.acquire()
    lease = await api.get(leases_path(namespace, LEASE))
    spec = lease["spec"]
    assert set(spec) == {
        "holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions",
    }  # fmt: skip
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("alpha", 4)
    assert (spec["leaseTransitions"], term.number) == (0, 0)
    assert spec["acquireTime"] == spec["renewTime"]
    assert MICRO_TIME.match(spec["acquireTime"]), spec
    assert lease["metadata"]["labels"] == {"lockyard.dev/kind": "election"}

    keeping = asyncio.create_task(elector.keep(term))
    await asyncio.sleep(4 * TIMINGS.retry_period_s)
    renewed = await api.get(leases_path(namespace, LEASE))
    assert renewed["spec"]["renewTime"] > spec["renewTime"], "renewed every retry period"
    assert renewed["spec"]["acquireTime"] == spec["acquireTime"]
    assert renewed["spec"]["leaseTransitions"] == 0, "a renewal is no new term"
    assert renewed["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]
    assert term.active()

    keeping.cancel()
    await asyncio.gather(keeping, return_exceptions=True)
    assert await elector.release(term)
    released = await spec_of(api, namespace)
    # client-go's ReleaseOnCancel: no holder, a 1 s lease, the count kept.
    assert (released["holderIdentity"], released["leaseDurationSeconds"]) == ("", 1)
    assert released["leaseTransitions"] == 0
    assert not term.active()
    assert term.lost_reason == "released"


async def test_one_leader_among_contenders_and_terms_count_up(
    connect: Connect, namespace: str
) -> None:
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    electors = [candidate(await connect(), namespace, f"c{i}") for i in range(5)]
    tasks = [asyncio.create_task(e.acquire()) for e in electors]
    try:
        done, _ = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert done, "someone became leader"
        await asyncio.sleep(4 * TIMINGS.retry_period_s)  # the others keep trying meanwhile
        leaders = [t for t in tasks if t.done()]
        assert len(leaders) == 1, "exactly one leader"
        numbers = []
        for _ in range(3):
            leading = next(t for t in tasks if t.done() and t.result().active())
            term: Term = leading.result()
            elector = electors[tasks.index(leading)]
            numbers.append(term.number)
            assert (await spec_of(api, namespace))["holderIdentity"] == elector.identity
            released, released_wall = time.monotonic(), time.time()
            assert await elector.release(term)
            waiting = [t for t in tasks if not t.done()]
            done, _ = await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            took = time.monotonic() - released
            assert len(done) == 1, "exactly one successor"
            # A released Lease is free at once: the next try (one retry period) takes it. Judged
            # by when the successor decided to (its acquireTime, read before its write), not by
            # when its write came back: a write waits for etcd's fsync, which once took 4 s on
            # a loaded CI machine while reads stayed fast.
            decided = next(iter(done)).result().acquire_time - released_wall
            assert decided < TIMINGS.retry_period_s + slack, f"decided after {decided:.3f}s"
            print(f"successor decided {decided:.3f}s after the release, holding {took:.3f}s after")
        assert numbers == [0, 1, 2]
        assert (await spec_of(api, namespace))["leaseTransitions"] == 3
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_standby_judges_expiry_on_its_own_clock(connect: Connect, namespace: str) -> None:
    """A leader whose wall clock is an hour behind writes renewTimes that look long expired;
    the standby still waits the full lease duration from when it saw the record (client-go)."""
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    paused = candidate(await connect(), namespace, "skewed", clock=SkewedClock(-3600.0))
    term = await paused.acquire()  # and never renews: as if paused right after
    standby = candidate(await connect(), namespace, "standby")
    started = time.monotonic()
    taken = await standby.acquire()
    took = time.monotonic() - started
    print(f"standby took over {took:.2f}s after it first looked at the Lease")
    assert took >= TIMINGS.lease_duration_s, "never before the lease expired on its own clock"
    assert took < TIMINGS.lease_duration_s + TIMINGS.retry_period_s + slack
    assert taken.number == 1
    # The paused leader's own deadline passed before the standby could take the Lease.
    assert term.deadline < time.monotonic() - (TIMINGS.lease_duration_s - TIMINGS.renew_deadline_s)
    assert not term.active()


async def test_a_deleted_lease_ends_the_term(connect: Connect, namespace: str) -> None:
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    elector = candidate(await connect(), namespace, "alpha")
    term = await elector.acquire()
    keeping = asyncio.create_task(elector.keep(term))
    await asyncio.sleep(2 * TIMINGS.retry_period_s)
    await api.delete(leases_path(namespace, LEASE))
    deleted = time.monotonic()
    reason = await asyncio.wait_for(keeping, timeout=10)
    assert reason == "the Lease was deleted"
    assert time.monotonic() - deleted < TIMINGS.retry_period_s + slack
    assert not term.active()
    assert term.lost.is_set()


async def test_a_lease_taken_over_ends_the_term(connect: Connect, namespace: str) -> None:
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    elector = candidate(await connect(), namespace, "alpha")
    term = await elector.acquire()
    keeping = asyncio.create_task(elector.keep(term))
    await asyncio.sleep(2 * TIMINGS.retry_period_s)
    # Unconditional, like `kubectl patch`: it lands whatever the leader wrote meanwhile.
    await api.merge_patch(leases_path(namespace, LEASE), {"spec": {"holderIdentity": "intruder"}})
    taken = time.monotonic()
    reason = await asyncio.wait_for(keeping, timeout=10)
    assert reason == "the Lease is held by intruder now"
    # The next renewal meets 409; the one after reads the Lease and sees the new holder.
    assert time.monotonic() - taken < 2 * TIMINGS.retry_period_s + slack
    assert not term.active()


async def test_release_after_a_renewal_whose_answer_was_lost(
    connect: Connect, namespace: str
) -> None:
    """A renewal cancelled mid-request can land although its answer never comes back: the
    release then meets its own write's resourceVersion, and still releases the Lease."""
    api = await connect()
    elector = candidate(await connect(), namespace, "alpha")
    term = await elector.acquire()
    # The write a cancelled renewal left behind: the same holder, a later renewTime.
    await api.merge_patch(
        leases_path(namespace, LEASE), {"spec": {"renewTime": "2030-01-01T00:00:00.000000Z"}}
    )
    assert await elector.release(term)
    released = await spec_of(api, namespace)
    assert (released["holderIdentity"], released["leaseDurationSeconds"]) == ("", 1)
    assert term.lost_reason == "released"


async def test_release_leaves_a_lease_someone_else_took(connect: Connect, namespace: str) -> None:
    api = await connect()
    elector = candidate(await connect(), namespace, "alpha")
    term = await elector.acquire()
    await api.merge_patch(leases_path(namespace, LEASE), {"spec": {"holderIdentity": "intruder"}})
    assert not await elector.release(term)
    taken = await spec_of(api, namespace)
    assert (taken["holderIdentity"], taken["leaseDurationSeconds"]) == ("intruder", 4)
    assert not term.active()


async def test_cut_off_leader_stops_at_its_renew_deadline(
    connect: Connect,
    namespace: str,
    control_plane: ControlPlane,
    toxiproxy: Toxiproxy,
    tmp_path: Path,
) -> None:
    """The API server stops answering the leader (no data passes its proxy, nothing closes):
    the term ends at the renew deadline after the start of the last confirmed renewal, before
    the standby (talking to the API directly) can take the Lease."""
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    proxy = toxiproxy.create_proxy(f"api-{namespace}", apiserver_port(control_plane))
    kubeconfig = proxied_kubeconfig(control_plane, proxy.listen_port, tmp_path / "kubeconfig")
    leader = candidate(await connect(kubeconfig), namespace, "cut-off")
    term = await leader.acquire()
    keeping = asyncio.create_task(leader.keep(term))
    standby = candidate(await connect(), namespace, "standby")
    standing_by = asyncio.create_task(standby.acquire())
    await asyncio.sleep(4 * TIMINGS.retry_period_s)
    assert term.active()
    assert not standing_by.done()

    toxiproxy.add_toxic(proxy.name, "blackhole", "timeout", {"timeout": 0}, stream="upstream")
    reason = await asyncio.wait_for(keeping, timeout=TIMINGS.lease_duration_s + 10)
    lost_at = time.monotonic()
    confirmed_start = term.deadline - TIMINGS.renew_deadline_s
    print(f"lost {lost_at - confirmed_start:.3f}s after the start of the last confirmed renewal")
    assert reason.startswith("no renewal confirmed within 3s"), reason
    assert term.deadline <= lost_at < term.deadline + slack
    taken = await asyncio.wait_for(standing_by, timeout=TIMINGS.lease_duration_s + 10)
    taken_at = time.monotonic()
    print(f"standby took over {taken_at - lost_at:.3f}s after the leader declared its loss")
    assert taken_at > lost_at, "the leader stopped before the standby could take over"
    assert taken.number == 1


async def test_slow_network_keeps_or_ends_the_term_in_time(
    connect: Connect,
    namespace: str,
    control_plane: ControlPlane,
    toxiproxy: Toxiproxy,
    tmp_path: Path,
) -> None:
    """0.4 s each way: renewals take 0.8 s and the term lasts. 2 s each way: no renewal can be
    confirmed within the 3 s renew deadline, and the term ends there."""
    api = await connect()
    slack = slack_s(await round_trip_s(api, namespace))
    proxy = toxiproxy.create_proxy(f"api-{namespace}", apiserver_port(control_plane))
    kubeconfig = proxied_kubeconfig(control_plane, proxy.listen_port, tmp_path / "kubeconfig")
    leader = candidate(await connect(kubeconfig), namespace, "slow")
    term = await leader.acquire()
    keeping = asyncio.create_task(leader.keep(term))
    for stream in ("upstream", "downstream"):
        latency(toxiproxy, proxy.name, f"slow-{stream}", 400, stream)
    before = (await spec_of(api, namespace))["renewTime"]
    await asyncio.sleep(3 * TIMINGS.renew_deadline_s)
    assert term.active(), "a slow network alone does not end a term"
    assert not keeping.done()
    assert str((await spec_of(api, namespace))["renewTime"]) > str(before)

    for stream in ("upstream", "downstream"):
        toxiproxy.remove_toxic(proxy.name, f"slow-{stream}")
        latency(toxiproxy, proxy.name, f"slower-{stream}", 2000, stream)
    reason = await asyncio.wait_for(keeping, timeout=TIMINGS.lease_duration_s + 10)
    lost_at = time.monotonic()
    assert reason.startswith("no renewal confirmed"), reason
    assert term.deadline <= lost_at < term.deadline + slack
