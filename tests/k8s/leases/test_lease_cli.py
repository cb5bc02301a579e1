"""``lockyard locks`` and ``lockyard stores`` as a user runs them: a separate process, a
kubeconfig, real Leases, real backends; output formats and exit codes."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import json
import os
import pty
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from lease_support import STORE, Cli, Cluster, publish_binding, run_process

import lockyard
from lockyard import identity
from lockyard.errors import ConfigError
from lockyard.kube import KubeClient
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import leases_path, stores_path
from lockyard.mirror import Holder, LeaseMirror, enable_lease_mirroring
from lockyard.mirror.lease_names import (
    FENCING_ANNOTATION,
    LOCK_ANNOTATION,
    MANAGED_BY_LABEL,
    STORE_ANNOTATION,
    STORE_LABEL,
    lease_name,
)
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.redis import RedisServer

REPO = repository_root()
CRD = REPO / "crds" / "statestores.lockyard.dev.yaml"


@pytest.fixture
def cli(kubeconfig: Path) -> Cli:
    return Cli(kubeconfig)


def table(text: str) -> list[list[str]]:
    """Split an aligned table into cells (columns are separated by 3+ spaces)."""
    import re

    return [re.split(r"\s{3,}", line.strip()) for line in text.splitlines() if line.strip()]


async def test_locks_table_and_formats(
    cli: Cli, memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    guard = await memory.locks.acquire("invoice-17", ttl=30, timeout=1)
    other = await memory.locks.acquire("tenant/acme: report", ttl=30, timeout=1)
    await mirrored.flush()

    code, out, err = await cli("locks", "-n", cluster.namespace)
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == [
        "STORE", "KIND", "LOCK", "HOLDER", "FENCING", "ACQUIRED", "RENEWED", "EXPIRES IN"
    ]  # fmt: skip
    assert {tuple(row[:5]) for row in rows[1:]} == {
        (STORE, "lock", "invoice-17", f"test-holder_{guard.owner[:8]}", "1"),
        (STORE, "lock", "tenant/acme: report", f"test-holder_{other.owner[:8]}", "1"),
    }
    assert "\x1b[" not in out  # not a terminal: no colour
    # Aligned: every column starts at the same offset on every line.
    lines = out.splitlines()
    assert len({line.index("test-holder") for line in lines[1:]}) == 1
    assert lines[0].index("HOLDER") == lines[1].index("test-holder")

    code, out, _ = await cli("locks", "-A", "-o", "wide", "--store", STORE)
    assert code == 0
    wide = [row for row in table(out) if row[0] in ("NAMESPACE", cluster.namespace)]
    assert wide[0][:2] == ["NAMESPACE", "STORE"]
    assert wide[0][-4:] == ["LEASE", "BACKEND", "TRANSITIONS", "POD"]
    assert [lease_name(STORE, "invoice-17"), "memory", "0", "<none>"] in [r[-4:] for r in wide]

    code, out, _ = await cli("locks", "-n", cluster.namespace, "-o", "json")
    assert code == 0
    items = {item["lock"]: item for item in json.loads(out)["items"]}
    assert set(items) == {"invoice-17", "tenant/acme: report"}
    item = items["invoice-17"]
    assert item["fencingToken"] == guard.fencing_token
    assert item["holder"] == f"test-holder_{guard.owner[:8]}"
    assert item["lease"] == lease_name(STORE, "invoice-17")
    assert 0 < item["expiresInSeconds"] <= 30
    assert item["acquireTime"].endswith("Z")

    code, out, _ = await cli("locks", "-n", cluster.namespace, "-o", "yaml", "--no-headers")
    assert code == 0
    assert {i["lock"] for i in yaml.safe_load(out)["items"]} == set(items)

    code, out, _ = await cli("locks", "-n", cluster.namespace, "--no-headers")
    assert code == 0
    assert len(table(out)) == 2

    await guard.release()
    await other.release()
    await mirrored.flush()
    code, out, err = await cli("locks", "-n", cluster.namespace)
    assert (code, out) == (0, "")
    assert err == f"No locks found in {cluster.namespace} namespace.\n"


async def test_kubectl_plugin(
    control_plane: ControlPlane,
    memory: lockyard.Connection,
    mirrored: LeaseMirror,
    cluster: Cluster,
) -> None:
    guard = await memory.locks.acquire("via-kubectl", ttl=30, timeout=1)
    await mirrored.flush()
    # kubectl runs `kubectl-lockyard` from $PATH for `kubectl lockyard ...`.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    code, out, err = await run_process(
        [str(control_plane.bin_dir / "kubectl"), "lockyard", "locks", "-n", cluster.namespace],
        env={**os.environ, "PATH": path, "KUBECONFIG": str(control_plane.kubeconfig)},
        timeout=60,
    )
    assert code == 0, err
    assert table(out)[1][:3] == [STORE, "lock", "via-kubectl"]
    await guard.release()


async def test_usage_and_error_exit_codes(cli: Cli, tmp_path: Path) -> None:
    code, _, err = await cli("locks", "-A", "-n", "x")
    assert code == 2
    assert err == "error: -A and -n cannot be used together\n"
    code, _, err = await cli("locks", "-o", "xml")
    assert code == 2
    assert "invalid choice: 'xml'" in err
    code, _, err = await cli("locks", "nonsense")
    assert code == 2
    code, _, err = await cli("locks", "break", "x")  # --store is required
    assert code == 2
    assert "--store" in err
    code, _, err = await cli("locks", "--output-watch-events")
    assert code == 2
    # An unreachable API server is an error, not a usage problem.
    broken = tmp_path / "kubeconfig"
    broken.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        })
    )  # fmt: skip
    code, out, err = await cli("locks", "-A", "--kubeconfig", str(broken), "--request-timeout", "2")
    assert (code, out) == (1, "")
    assert err.startswith("error: cannot reach the Kubernetes API while listing Leases")
    code, _, err = await cli("locks", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 1
    assert err.startswith("error: no usable Kubernetes credentials")


async def test_verify_flags_stale_and_missing_mirrors(
    cli: Cli,
    redis_server: RedisServer,
    k8s_api: client.ApiClient,
    kube: KubeClient,
    cluster: Cluster,
) -> None:
    url = redis_server.url(f"verify-{secrets.token_hex(3)}")
    await publish_binding(kube, cluster.namespace, STORE, url)
    async with lockyard.connect(url) as mirrored_handle, lockyard.connect(url) as plain:
        mirror = enable_lease_mirroring(mirrored_handle, STORE, cluster.namespace, k8s_api,
                                        holder=Holder("app"))  # fmt: skip
        held = await mirrored_handle.locks.acquire("held", ttl=60, timeout=1)
        await mirrored_handle.locks.acquire("broken", ttl=60, timeout=1)
        await mirror.flush()
        await mirror.close()  # its holder "dies": the broken lock's Lease stays behind
        assert await plain.locks.break_lock("broken")
        unmirrored = await plain.locks.acquire("unmirrored", ttl=60, timeout=1)

        code, out, err = await cli("locks", "-n", cluster.namespace, "--store", STORE, "--verify")
        assert (code, err) == (0, "")
        rows = {row[2]: row for row in table(out)[1:]}
        assert table(out)[0][-1] == "VERIFIED"
        assert rows["held"][-1] == "held"
        assert rows["broken"][-1] == "stale (not held)"
        assert rows["unmirrored"][-1] == "missing (no Lease)"
        assert rows["unmirrored"][4] == str(unmirrored.fencing_token)

        code, out, _ = await cli("locks", "-n", cluster.namespace, "--verify", "-o", "json")
        assert code == 0
        verdicts = {item["lock"]: item["verified"] for item in json.loads(out)["items"]}
        assert verdicts == {"held": "held", "broken": "stale", "unmirrored": "missing"}
        await held.release()
        await unmirrored.release()


async def test_verify_reports_an_unreachable_store(
    cli: Cli, memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    guard = await memory.locks.acquire("somewhere", ttl=30, timeout=1)
    await mirrored.flush()
    code, out, err = await cli("locks", "-n", cluster.namespace, "--verify")
    assert code == 1
    assert table(out)[1][-1] == "unknown"
    assert f"StateStore {cluster.namespace}/{STORE} has no binding Secret" in err
    await guard.release()


async def test_connect_store_and_the_cli_say_the_same_when_the_binding_is_missing(
    cli: Cli,
    kubeconfig: Path,
    memory: lockyard.Connection,
    mirrored: LeaseMirror,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One binding reader: the workload and the CLI name the same Secret, namespace and fix."""
    guard = await memory.locks.acquire("orphan", ttl=30, timeout=1)
    await mirrored.flush()
    monkeypatch.delenv("SERVICE_BINDING_ROOT", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(ConfigError) as caught:
        await lockyard.connect_store(STORE, cluster.namespace)
    message = str(caught.value)
    secret = f"{cluster.namespace}/{store_object_name(STORE)}"
    assert f"StateStore {cluster.namespace}/{STORE} has no binding Secret {secret}" in message
    assert f"kubectl get statestore {STORE} -n {cluster.namespace}" in message
    code, _, err = await cli("locks", "-n", cluster.namespace, "--verify")
    assert code == 1
    assert err == f"error: {message}\n"
    await guard.release()


async def test_break_a_lock(
    cli: Cli,
    redis_server: RedisServer,
    k8s_api: client.ApiClient,
    kube: KubeClient,
    cluster: Cluster,
) -> None:
    url = redis_server.url(f"break-{secrets.token_hex(3)}")
    await publish_binding(kube, cluster.namespace, STORE, url)
    async with lockyard.connect(url) as handle:
        mirror = enable_lease_mirroring(handle, STORE, cluster.namespace, k8s_api,
                                        holder=Holder("stuck"))  # fmt: skip
        guard = await handle.locks.acquire("stuck-job", ttl=60, timeout=1)
        await mirror.flush()

        # No terminal to ask on and no --yes: refused, as a usage error.
        args = ("locks", "break", "stuck-job", "--store", STORE, "-n", cluster.namespace)
        code, out, err = await cli(*args)
        assert (code, out) == (2, "")
        assert "stdin is not a terminal; pass --yes" in err
        assert await guard.is_held()

        # On a terminal it asks; "n" changes nothing.
        code, out, err = await answer_on_a_terminal(cli, args, "n\n")
        assert code == 1
        assert "Break lock 'stuck-job'" in out
        assert "held by stuck_" in out
        assert f"fencing token {guard.fencing_token}" in out
        assert await guard.is_held()

        code, out, err = await answer_on_a_terminal(cli, args, "y\n")
        assert (code, err) == (0, "")
        assert "broken (fencing token 1); the next holder gets a higher one" in out
        assert not await guard.is_held()
        assert await cluster.leases() == []
        nxt = await handle.locks.acquire("stuck-job", ttl=60, timeout=1)
        assert nxt.fencing_token > guard.fencing_token
        await nxt.release()

        code, out, err = await cli(*args, "--yes")
        assert code == 1
        assert (
            err
            == f"error: lock 'stuck-job' of StateStore {cluster.namespace}/{STORE} is not held\n"
        )


async def answer_on_a_terminal(
    cli: Cli, args: tuple[str, ...], answer: str
) -> tuple[int, str, str]:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return await cli(*args, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


async def test_watch_prints_changes(
    cli: Cli, memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    first = await memory.locks.acquire("existing", ttl=30, timeout=1)
    await mirrored.flush()
    # How long the CLI takes to start and list here and now (seconds on a loaded machine).
    began = time.monotonic()
    await cli("locks", "-n", cluster.namespace)
    one_shot_s = time.monotonic() - began
    watch = asyncio.ensure_future(
        cli(
            "locks",
            "-n",
            cluster.namespace,
            "-w",
            "--output-watch-events",
            "--request-timeout",
            f"{6 + 3 * one_shot_s:.0f}",  # the watch ends then, after the changes below
        )
    )
    await asyncio.sleep(1.0 + 2 * one_shot_s)  # let the CLI list and start watching
    second = await memory.locks.acquire("arriving", ttl=30, timeout=1)
    await mirrored.flush()
    await first.release()
    await mirrored.flush()
    code, out, err = await watch
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0][:4] == ["EVENT", "STORE", "KIND", "LOCK"]
    events = [(row[0], row[3]) for row in rows[1:]]
    assert ("ADDED", "existing") in events  # the initial list
    assert ("ADDED", "arriving") in events
    deleted = [row for row in rows[1:] if row[0] == "DELETED"]
    assert [row[3] for row in deleted] == ["existing"]
    assert deleted[0][-1] == "released"
    await second.release()


async def test_a_thousand_locks_across_ten_namespaces_in_under_two_seconds(
    cli: Cli, kube: KubeClient, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    run = secrets.token_hex(3)
    namespaces = [f"t-many-{run}-{i}" for i in range(10)]
    for name in namespaces:
        await asyncio.to_thread(
            core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    try:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

        def create(index: int) -> None:
            lock = f"bulk-{index}"
            kube.create(
                leases_path(namespaces[index % 10]),
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": lease_name("bulk", lock),
                        "labels": {MANAGED_BY_LABEL: "lockyard", STORE_LABEL: "bulk"},
                        "annotations": {
                            LOCK_ANNOTATION: lock,
                            STORE_ANNOTATION: "bulk",
                            FENCING_ANNOTATION: str(index + 1),
                        },
                    },
                    "spec": {
                        "holderIdentity": f"pod-{index}_0123abcd",
                        "leaseDurationSeconds": 600,
                        "acquireTime": now,
                        "renewTime": now,
                    },
                },
            )

        def create_all() -> None:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(1000)))

        await asyncio.to_thread(create_all)
        walls, cpus = [], []
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            code, out, err = await cli("locks", "-A")
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            assert (code, err) == (0, "")
        bulk = [row for row in table(out)[1:] if row[1] == "bulk"]
        assert len(bulk) == 1000
        assert {row[0] for row in bulk} == set(namespaces)
        load = os.getloadavg()[0]
        print(f"\n`lockyard locks -A` with 1,000 Leases in 10 namespaces (whole process): "
              f"wall {', '.join(f'{t:.2f}s' for t in walls)}; "
              f"CPU {', '.join(f'{t:.2f}s' for t in cpus)}; load average {load:.1f}")  # fmt: skip
        # What the command costs is its CPU time; its wall time is that only when it gets a core
        # to itself (on a shared, oversubscribed test machine it waits for one, even to start).
        assert min(cpus) < 2.0
        if load < (os.cpu_count() or 1):
            assert min(walls) < 2.0
    finally:
        for name in namespaces:
            await asyncio.to_thread(core.delete_namespace, name, propagation_policy="Background")


@pytest.fixture(scope="session")
def statestore_crd(control_plane: ControlPlane) -> str:
    """The StateStore CRD, installed once (idempotent: the operator's tests may apply it too)."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for", "condition=Established", "crd/statestores.lockyard.dev", "--timeout=60s"
    )
    return "statestores.lockyard.dev"


def test_identity_is_a_leaf_and_listing_never_loads_the_crd_models() -> None:
    """The CLI takes the StateStore's names from ``lockyard.identity``, which imports
    nothing, so ``lockyard locks`` and ``lockyard stores`` never pay for pydantic."""
    tree = ast.parse(Path(identity.__file__).read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    listing = (
        "import sys\n"
        "from lockyard.cli import _cluster, main\n"
        "from lockyard.kube import errors, paths\n"
        "from lockyard.mirror import lease_names\n"
        "main.build_parser()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'pydantic'))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", listing], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


async def test_stores_lists_statestores_with_conditions(
    cli: Cli, statestore_crd: str, kube: KubeClient, cluster: Cluster
) -> None:
    base = stores_path(cluster.namespace)
    for name in ("orders", "payments"):
        await asyncio.to_thread(
            kube.request, "POST", base,
            body={"apiVersion": "lockyard.dev/v1alpha1", "kind": "StateStore",
                  "metadata": {"name": name},
                  "spec": {"redis": {"host": "127.0.0.1", "port": 6379}}},
        )  # fmt: skip
    stored: dict[str, Any] = await asyncio.to_thread(kube.request, "GET", f"{base}/orders")
    stored["status"] = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "all good",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "BackendReachable", "status": "True", "reason": "Reachable",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
        "backend": {"name": "redis", "version": "7.0"},
        "locks": {"held": 3},
        "prefix": f"{cluster.namespace}.orders",
        "binding": {"name": "lockyard-store-orders"},
    }  # fmt: skip
    await asyncio.to_thread(kube.request, "PUT", f"{base}/orders/status", body=stored)

    code, out, err = await cli("stores", "-n", cluster.namespace)
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == ["NAME", "BACKEND", "READY", "REASON", "LOCKS", "AGE"]
    assert rows[1][:5] == ["orders", "redis", "True", "Ready", "3"]
    assert rows[2][:5] == ["payments", "redis", "Unknown", "<none>", "<unknown>"]

    code, out, _ = await cli("stores", "orders", "-A", "-o", "wide")
    assert code == 0
    (header, row) = [r for r in table(out) if r[0] in ("NAMESPACE", cluster.namespace)]
    assert header[-4:] == ["PREFIX", "BINDING", "CONDITIONS", "MESSAGE"]
    assert row[-4:] == [f"{cluster.namespace}.orders", "lockyard-store-orders",
                        "Ready=True,BackendReachable=True", "all good"]  # fmt: skip

    code, out, _ = await cli("stores", "-n", cluster.namespace, "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert document["kind"] == "List"
    assert [item["metadata"]["name"] for item in document["items"]] == ["orders", "payments"]

    code, out, err = await cli("stores", "nope", "-n", cluster.namespace)
    assert (code, out) == (1, "")
    assert err == f'error: statestore "nope" not found in namespace {cluster.namespace}\n'
