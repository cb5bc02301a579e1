"""The local control plane is a real Kubernetes API: storage, CRDs, kubectl, garbage
collection, namespace deletion, service-account tokens and RBAC all behave as on a cluster."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from lockyard_dev.cluster.controlplane import (
    SERVICE_ACCOUNT_ISSUER,
    ControlPlane,
    find_binaries,
)

pytestmark = pytest.mark.k8s

GROUP = "smoke.lockyard.dev"

T = TypeVar("T")


async def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll the sync ``probe`` (in a thread) until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(probe)
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status a client call ends with (200 when it does not raise)."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


async def test_server_is_the_pinned_kubernetes(
    control_plane: ControlPlane, k8s_api: client.ApiClient
) -> None:
    version = await asyncio.to_thread(client.VersionApi(k8s_api).get_code)
    assert version.git_version.startswith("v1.")
    kubectl = await asyncio.to_thread(control_plane.kubectl, "version", "-o", "json")
    versions = json.loads(kubectl.stdout)
    assert versions["serverVersion"]["gitVersion"] == version.git_version
    assert versions["clientVersion"]["gitVersion"] == version.git_version


async def test_namespace_fixture_gets_a_default_service_account(
    namespace: str, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    created = await asyncio.to_thread(core.read_namespace, namespace)
    assert created.status.phase == "Active"

    def default_account() -> object | None:
        accounts = core.list_namespaced_service_account(namespace).items
        return next((a for a in accounts if a.metadata.name == "default"), None)

    await eventually(default_account, "the serviceaccount controller")


async def test_custom_resource_definition_is_served_and_validated(
    namespace: str, k8s_api: client.ApiClient
) -> None:
    extensions = client.ApiextensionsV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    # The CRD is cluster-wide and the cluster lives for the session: a unique kind per run.
    suffix = secrets.token_hex(3)
    plural, kind = f"widgets{suffix}", f"Widget{suffix}"
    crd_name = f"{plural}.{GROUP}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": f"widget{suffix}", "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    await asyncio.to_thread(extensions.create_custom_resource_definition, crd)
    try:

        def established() -> bool | None:
            conditions = extensions.read_custom_resource_definition(crd_name).status.conditions
            return any(c.type == "Established" and c.status == "True" for c in conditions or ())

        await eventually(lambda: established() or None, f"{crd_name} to be Established")

        body = {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "one"},
            "spec": {"size": 3},
        }
        await asyncio.to_thread(
            custom.create_namespaced_custom_object, GROUP, "v1", namespace, plural, body
        )
        stored = await asyncio.to_thread(
            custom.get_namespaced_custom_object, GROUP, "v1", namespace, plural, "one"
        )
        assert stored["spec"] == {"size": 3}
        assert stored["metadata"]["uid"]

        invalid = {**body, "metadata": {"name": "two"}, "spec": {"size": 0}}
        status = await asyncio.to_thread(
            status_of,
            lambda: custom.create_namespaced_custom_object(GROUP, "v1", namespace, plural, invalid),
        )
        assert status == 422  # the structural schema is enforced by the server
    finally:
        await asyncio.to_thread(extensions.delete_custom_resource_definition, crd_name)


async def test_kubectl_applies_a_lease(
    control_plane: ControlPlane, namespace: str, k8s_api: client.ApiClient
) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "smoke", "namespace": namespace},
        "spec": {"holderIdentity": "smoke-test", "leaseDurationSeconds": 15},
    }
    applied = await asyncio.to_thread(
        control_plane.kubectl, "apply", "-f", "-", input=json.dumps(lease)
    )
    assert "lease.coordination.k8s.io/smoke created" in applied.stdout

    stored = await asyncio.to_thread(
        client.CoordinationV1Api(k8s_api).read_namespaced_lease, "smoke", namespace
    )
    assert stored.spec.holder_identity == "smoke-test"
    assert stored.spec.lease_duration_seconds == 15


async def test_garbage_collector_deletes_dependents(
    namespace: str, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    owner = await asyncio.to_thread(
        core.create_namespaced_config_map,
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")),
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    await asyncio.to_thread(
        core.create_namespaced_config_map,
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )
    await asyncio.to_thread(core.delete_namespaced_config_map, "owner", namespace)

    def dependent_gone() -> bool | None:
        found = status_of(lambda: core.read_namespaced_config_map("dependent", namespace))
        return True if found == 404 else None

    await eventually(dependent_gone, "the garbage collector to delete the dependent")


async def test_namespace_deletion_empties_and_removes_it(k8s_api: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api)
    name = f"t-doomed-{secrets.token_hex(3)}"
    await asyncio.to_thread(
        core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    await asyncio.to_thread(
        core.create_namespaced_config_map,
        name,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content")),
    )
    await asyncio.to_thread(core.delete_namespace, name)

    def namespace_gone() -> bool | None:
        return True if status_of(lambda: core.read_namespace(name)) == 404 else None

    await eventually(namespace_gone, "the namespace controller to finish")


async def test_service_account_token_is_bound_by_rbac(
    control_plane: ControlPlane, namespace: str, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    await asyncio.to_thread(
        core.create_namespaced_service_account,
        namespace,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader")),
    )
    await asyncio.to_thread(
        rbac.create_namespaced_role,
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                )
            ],
        ),
    )
    await asyncio.to_thread(
        rbac.create_namespaced_role_binding,
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader")],
        ),
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=600)
    )
    minted = await asyncio.to_thread(
        core.create_namespaced_service_account_token, "reader", namespace, request
    )
    token = minted.status.token
    assert token.count(".") == 2  # a JWT

    configuration = client.Configuration()
    configuration.host = control_plane.server
    configuration.ssl_ca_cert = str(control_plane.ca_file)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(configuration) as as_reader:
        review = await asyncio.to_thread(
            client.AuthenticationV1Api(as_reader).create_self_subject_review,
            client.V1SelfSubjectReview(),
        )
        assert review.status.user_info.username == (f"system:serviceaccount:{namespace}:reader")
        reader = client.CoreV1Api(as_reader)

        def allowed() -> bool | None:
            # The authorizer reads RBAC objects from a cache: the binding may lag briefly.
            status = status_of(lambda: reader.list_namespaced_config_map(namespace))
            return True if status == 200 else None

        await eventually(allowed, "the RoleBinding to grant configmap reads")
        denied = [
            lambda: reader.list_namespaced_secret(namespace),
            lambda: reader.list_namespaced_config_map("default"),
            lambda: reader.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            ),
        ]
        for call in denied:
            assert await asyncio.to_thread(status_of, call) == 403


async def test_api_server_restarts_on_the_same_port(
    control_plane: ControlPlane, namespace: str, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    server = control_plane.server
    await asyncio.to_thread(control_plane.stop_apiserver)
    try:
        with pytest.raises(MaxRetryError):
            await asyncio.to_thread(core.read_namespace, namespace, _request_timeout=5)
    finally:
        await asyncio.to_thread(control_plane.start_apiserver)
    assert control_plane.server == server
    # etcd kept the data; the same client reconnects.
    restored = await asyncio.to_thread(core.read_namespace, namespace)
    assert restored.metadata.name == namespace


@pytest.mark.timeout(420)  # above the command's own 300 s, so its message wins
def test_run_gives_a_command_a_throwaway_cluster_and_its_exit_status() -> None:
    # The command lists namespaces through the KUBECONFIG `run` gave it, then exits with 3.
    script = (
        "import os, pathlib, subprocess, sys; cfg = os.environ['KUBECONFIG']; print(cfg);"
        "out = subprocess.run([sys.argv[1], 'get', 'namespace', 'default', '-o', 'name'],"
        " capture_output=True, text=True, check=True).stdout; print(out); sys.exit(3)"
    )
    kubectl = str(find_binaries() / "kubectl")
    argv = [sys.executable, "-m", "lockyard_dev.cluster.controlplane", "run", "--"]
    done = subprocess.run(
        [*argv, sys.executable, "-c", script, kubectl], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 3, done.stderr[-2000:]
    kubeconfig, listed = done.stdout.splitlines()[:2]
    assert listed == "namespace/default"
    assert not Path(kubeconfig).exists()  # the cluster's folder went with it


def test_run_without_a_command_says_how_to_use_it() -> None:
    argv = [sys.executable, "-m", "lockyard_dev.cluster.controlplane", "run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "name a command" in done.stderr
