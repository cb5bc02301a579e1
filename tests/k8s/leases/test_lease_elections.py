"""An election on a mirrored store shows as a Lease the way client-go's do, and in the CLI:
``lockyard locks`` says its KIND, ``lockyard elections`` lists it, and ``lockyard locks break``
ends its term (the leader learns it lost)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path

import pytest
from kubernetes import client
from lease_support import STORE, Cli, Cluster, publish_binding

import lockyard
from lockyard.identity import MANAGED_BY_LABEL, MANAGED_BY_VALUE, STORE_LABEL
from lockyard.kube import KubeApi, KubeClient
from lockyard.kube.leader_record import ELECTION_KIND, KIND_LABEL
from lockyard.mirror import Holder, LeaseMirror, enable_lease_mirroring
from lockyard_dev.servers.redis import RedisServer


async def run_cli(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """``python -m lockyard.cli.main ARGS`` against the test cluster, as a user runs it."""
    return await Cli(kubeconfig)(*args)


def table(text: str) -> list[list[str]]:
    return [re.split(r"\s{3,}", line.strip()) for line in text.splitlines() if line.strip()]


async def test_an_election_reads_like_client_gos_lease(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster, kubeconfig: Path
) -> None:
    leadership = await memory.elections.campaign("reconciler", "pod-a", ttl=15)
    lock = await memory.locks.acquire("invoice-17", ttl=30, timeout=1)
    await mirrored.flush()

    (lease,) = [
        obj
        for obj in await cluster.leases()
        if obj["metadata"]["annotations"]["lockyard.dev/lock"] == "election/reconciler"
    ]
    labels, spec = lease["metadata"]["labels"], lease["spec"]
    assert labels[KIND_LABEL] == ELECTION_KIND
    assert labels[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    assert STORE_LABEL in labels
    # client-go's LeaderElectionRecord fields, with the leader's own identity.
    assert spec["holderIdentity"] == "pod-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["acquireTime"].endswith("Z")
    assert spec["renewTime"].endswith("Z")
    assert spec["leaseTransitions"] == 0

    code, out, err = await run_cli(kubeconfig, "locks", "-n", cluster.namespace)
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0][:3] == ["STORE", "KIND", "LOCK"]
    assert {tuple(row[:4]) for row in rows[1:]} == {
        (STORE, "election", "election/reconciler", "pod-a"),
        (STORE, "lock", "invoice-17", f"test-holder_{lock.owner[:8]}"),
    }

    code, out, err = await run_cli(kubeconfig, "elections", "-n", cluster.namespace)
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == ["STORE", "ELECTION", "LEADER", "TERM", "ACQUIRED", "RENEWED", "EXPIRES IN"]
    assert rows[1][:4] == [STORE, "reconciler", "pod-a", str(leadership.term)]
    assert len(rows) == 2  # the plain lock is not an election

    code, out, _ = await run_cli(kubeconfig, "elections", "-A", "-o", "json", "--store", STORE)
    assert code == 0
    items = [i for i in json.loads(out)["items"] if i["namespace"] == cluster.namespace]
    assert [(i["election"], i["leader"], i["term"]) for i in items] == [
        ("reconciler", "pod-a", leadership.term)
    ]
    assert 0 < items[0]["expiresInSeconds"] <= 15

    # Resigning releases the Lease as client-go does: it stays, naming no leader.
    await leadership.resign()
    await lock.release()
    await mirrored.flush()
    (lease,) = await cluster.leases()
    assert lease["spec"]["holderIdentity"] == ""
    assert lease["spec"]["leaseTransitions"] == 0
    code, out, _ = await run_cli(kubeconfig, "elections", "-n", cluster.namespace)
    assert code == 0
    assert table(out)[1][:4] == [STORE, "reconciler", "<none>", str(leadership.term)]
    code, out, err = await run_cli(kubeconfig, "locks", "-n", cluster.namespace)
    assert (code, out) == (0, "")  # nothing is held
    assert "No locks found" in err

    # The next term takes the same Lease over: a new holder, one more transition.
    second = await memory.elections.campaign("reconciler", "pod-b", ttl=15)
    await mirrored.flush()
    (lease,) = await cluster.leases()
    assert lease["spec"]["holderIdentity"] == "pod-b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["metadata"]["annotations"]["lockyard.dev/fencing-token"] == str(second.term)
    await second.resign()
    await mirrored.flush()
    (lease,) = await cluster.leases()
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("", 1)


async def test_the_reaper_releases_a_dead_leaders_lease(
    memory: lockyard.Connection,
    k8s_api: client.ApiClient,
    kube_api: KubeApi,
    cluster: Cluster,
) -> None:
    from lockyard_operator.reaper import reap_leases

    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api, holder=Holder("x"))
    leadership = await memory.elections.campaign("reconciler", "pod-a", ttl=30)
    await mirror.flush()
    await mirror.close()  # the leader's mirror "dies" with it: its Lease says pod-a leads
    assert await memory.elections.break_leadership("reconciler")
    result = await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert result.deleted == 1
    (lease,) = await cluster.leases()
    assert lease["spec"]["holderIdentity"] == ""  # released, not deleted: its history stays
    assert lease["metadata"]["labels"][KIND_LABEL] == ELECTION_KIND
    again = await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert again.deleted == 0
    assert len(await cluster.leases()) == 1
    assert not await leadership.resign()


async def test_breaking_an_election_from_the_cli_deposes_its_leader(
    redis_server: RedisServer,
    k8s_api: client.ApiClient,
    kube: KubeClient,
    cluster: Cluster,
    kubeconfig: Path,
) -> None:
    url = redis_server.url(f"elections-{secrets.token_hex(3)}")
    await publish_binding(kube, cluster.namespace, STORE, url)
    async with lockyard.connect(url) as ly:
        mirror = enable_lease_mirroring(ly, STORE, cluster.namespace, k8s_api, holder=Holder("app"))
        try:
            with pytest.raises(lockyard.LockLostError):
                async with ly.elections.campaign("reconciler", "pod-a", ttl=3) as leadership:
                    await mirror.flush()
                    code, out, err = await run_cli(
                        kubeconfig, "locks", "break", "election/reconciler",
                        "--store", STORE, "-n", cluster.namespace, "--yes",
                    )  # fmt: skip
                    assert (code, err) == (0, ""), out
                    await asyncio.sleep(30)  # cancelled at the next renewal (every 1 s)
            assert leadership.lost.is_set()
            assert await ly.elections.leader("reconciler") is None
        finally:
            await mirror.close()
            await ly.store.purge()
