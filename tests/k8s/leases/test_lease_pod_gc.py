"""A holder running in a pod owns its Leases: deleting the pod garbage-collects them."""

from __future__ import annotations

import asyncio

from kubernetes import client
from lease_support import STORE, Cluster

import lockyard
from lockyard.mirror import enable_lease_mirroring
from lockyard.mirror.holder import Holder
from lockyard.mirror.lease_names import HOLDER_POD_ANNOTATION


async def test_deleting_the_pod_removes_its_leases(
    memory: lockyard.Connection, k8s_api: client.ApiClient, cluster: Cluster
) -> None:
    core = client.CoreV1Api(k8s_api)
    # No kubelet runs: the pod stays Pending, but it is a real object the collector knows.
    pod = await asyncio.to_thread(
        core.create_namespaced_pod,
        cluster.namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="worker-0"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="app:1")]),
        ),
    )
    # What the downward API gives a container (POD_NAME, POD_NAMESPACE, POD_UID).
    holder = Holder.detect(
        {"POD_NAME": "worker-0", "POD_NAMESPACE": cluster.namespace, "POD_UID": pod.metadata.uid}
    )
    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api, holder=holder)
    guards = [await memory.locks.acquire(f"shard-{i}", ttl=60, timeout=1) for i in range(3)]
    await mirror.flush()
    leases = await cluster.leases()
    assert len(leases) == 3
    for lease in leases:
        assert lease["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Pod", "name": "worker-0", "uid": pod.metadata.uid}
        ]
        assert lease["metadata"]["annotations"][HOLDER_POD_ANNOTATION] == (
            f"{cluster.namespace}/worker-0"
        )
        assert lease["spec"]["holderIdentity"].startswith("worker-0_")

    await asyncio.to_thread(core.delete_namespaced_pod, "worker-0", cluster.namespace)

    async def gone() -> bool:
        return not await cluster.leases()

    await cluster.eventually(gone, "the garbage collector to delete the pod's Leases", 60)
    await mirror.close()
    assert len(guards) == 3
