"""A conditional Lease replace through Lockyard's Kubernetes client is sent once.

``make jepsen`` found this on kube-apiserver behind toxiproxy (scenario ``latency``): a replace
whose reply came later than the read timeout was reported as a 409 conflict although the server
had applied it. urllib3, under the official client, retries PUT and DELETE after a read
timeout by default (``Retry(total=3)``); the second PUT then meets the new resourceVersion the
first one wrote. ``KubeApi`` promises one request per call (repeated only after a 429), so a
reply that does not come in time must surface as ``KubeUnreachableError`` (the write may have
happened), never as a conflict.

Here every reply is delayed past the read timeout until the delay is lifted, after the first
attempt timed out: a retry then gets its 409 at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError, KubeUnreachableError
from lockyard.kube.paths import LEASE_API_VERSION, leases_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.jepsen.toxiproxy import Toxiproxy

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

READ_TIMEOUT_S = 0.5
REPLY_DELAY_MS = 3000
#: When the delay is lifted: after the first attempt's read timeout.
LIFT_AFTER_S = 0.8


async def test_a_replace_whose_reply_is_late_is_unknown_not_a_conflict(
    jepsen_control_plane: ControlPlane, toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    plane = jepsen_control_plane
    port = int(plane.server.rsplit(":", 1)[1])
    proxy = toxiproxy.create_proxy(f"kube-{secrets.token_hex(3)}", port)
    config = json.loads(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.listen_port}"
    through_proxy = tmp_path / "kubeconfig.json"
    through_proxy.write_text(json.dumps(config))

    name = f"single-request-{secrets.token_hex(3)}"
    lease = {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": "first", "leaseTransitions": 1},
    }
    direct = await KubeApi.connect(str(plane.kubeconfig))
    slow = await KubeApi.connect(str(through_proxy), timeout=(5.0, READ_TIMEOUT_S))
    try:
        created = await direct.create(leases_path("default"), lease)
        replacement = {**created, "spec": {"holderIdentity": "second", "leaseTransitions": 2}}
        # An open connection first, so the PUT is not held up in a TLS handshake instead.
        await slow.get(leases_path("default", name))
        toxiproxy.add_toxic(proxy.name, "late", "latency", {"latency": REPLY_DELAY_MS})
        replace = asyncio.ensure_future(slow.replace(leases_path("default", name), replacement))
        await asyncio.sleep(LIFT_AFTER_S)
        toxiproxy.remove_toxic(proxy.name, "late")
        outcome: object
        try:
            outcome = await replace
        except KubeApiError as exc:
            outcome = exc
        stored = await direct.get(leases_path("default", name))
        # The PUT was applied, whatever the client was told.
        assert stored["spec"]["holderIdentity"] == "second"
        # Unknown (no reply in time), or the reply itself if it beat a slow timer: never a 409.
        assert isinstance(outcome, KubeUnreachableError) or (
            isinstance(outcome, dict) and outcome["spec"]["holderIdentity"] == "second"
        ), f"the client said {outcome!r}"
    finally:
        await slow.close()
        await direct.delete(leases_path("default", name))
        await direct.close()
        toxiproxy.delete_proxy(proxy.name)
