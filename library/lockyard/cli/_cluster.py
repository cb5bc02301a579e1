"""Cluster access shared by ``lockyard locks`` and ``lockyard stores``.

Blocking calls through :class:`lockyard.mirror.kubeapi.KubeClient` (one short-lived process
makes a handful of requests; threads or an event loop would only add start-up time), and the
way from a StateStore to an open backend handle: its ``status.binding.name`` (else the
operator's naming rule), that Secret's data, :func:`lockyard.kube.binding.read_binding`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lockyard.cli._output import EXIT_USAGE, CliError
from lockyard.errors import ConfigError
from lockyard.mirror.kubeapi import (
    KubeApiError,
    KubeClient,
    kubeconfig_namespace,
    load_api_client,
)

if TYPE_CHECKING:
    from lockyard.connection import Connection
    from lockyard.kube.binding import StoreBinding

# Spelled out rather than imported: lockyard.config.resource builds the CRD's pydantic models,
# a tenth of a second that `lockyard locks` (which only reads Leases) should not pay.
# tests/k8s/leases/test_lease_cli.py checks they agree.
API_GROUP, API_VERSION, PLURAL = "lockyard.dev", "v1alpha1", "statestores"
STORES_PATH = f"/apis/{API_GROUP}/{API_VERSION}"
#: Seconds to wait for a backend while verifying or breaking locks.
BACKEND_TIMEOUT_S = 15.0


def connect(args: argparse.Namespace) -> tuple[KubeClient, str]:
    """An API client from ``--kubeconfig``/``--context``, and the default namespace."""
    kubeconfig = getattr(args, "kubeconfig", None)
    context = getattr(args, "context", None)
    try:
        client = load_api_client(kubeconfig, context)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    return KubeClient(client, owns=True), kubeconfig_namespace(kubeconfig, context)


def connect_scope(args: argparse.Namespace) -> tuple[KubeClient, str | None]:
    """:func:`connect`, and the namespace in scope: ``None`` with ``-A``, else ``-n`` or the
    kubeconfig context's."""
    if args.all_namespaces and args.namespace:
        raise CliError("-A and -n cannot be used together", EXIT_USAGE)
    kube, default_namespace = connect(args)
    return kube, None if args.all_namespaces else (args.namespace or default_namespace)


def api_problem(exc: KubeApiError, what: str) -> CliError:
    if exc.status == 0:
        return CliError(f"cannot reach the Kubernetes API while {what}: {exc.reason}")
    message = exc.body.get("message") or exc.reason
    return CliError(f"{what} failed (HTTP {exc.status}): {message}")


def list_stores(kube: KubeClient, namespace: str | None) -> list[dict[str, Any]]:
    """The StateStore objects in ``namespace`` (``None``: all); [] if the CRD is not installed."""
    where = f"/namespaces/{namespace}" if namespace else ""
    try:
        listed = kube.request("GET", f"{STORES_PATH}{where}/{PLURAL}")
    except KubeApiError as exc:
        if exc.status == 404:
            return []  # the CRD is not installed: no StateStores
        raise api_problem(exc, "listing StateStores") from exc
    return list(listed.get("items") or [])


def read_binding_secret(kube: KubeClient, namespace: str, store: str) -> dict[str, str]:
    """The decoded data of StateStore ``namespace/store``'s binding Secret."""
    from lockyard.kube.binding import decode_secret_data
    from lockyard.kube.names import store_object_name

    try:
        obj = kube.request("GET", f"{STORES_PATH}/namespaces/{namespace}/{PLURAL}/{store}")
        binding = ((obj.get("status") or {}).get("binding") or {}).get("name")
    except KubeApiError as exc:
        if exc.status != 404:
            raise api_problem(exc, f"reading StateStore {namespace}/{store}") from exc
        binding = None
    secret_name = binding or store_object_name(store)
    try:
        secret = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{secret_name}")
    except KubeApiError as exc:
        if exc.status == 404:
            raise CliError(
                f"StateStore {namespace}/{store} has no binding Secret ({secret_name}); "
                f"see `lockyard stores -n {namespace}`"
            ) from exc
        raise api_problem(exc, f"reading the binding Secret {namespace}/{secret_name}") from exc
    try:
        return decode_secret_data(secret, f"binding Secret {namespace}/{secret_name}")
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


@contextlib.asynccontextmanager
async def open_store(
    kube: KubeClient, namespace: str, store: str
) -> AsyncIterator[tuple[Connection, StoreBinding]]:
    """An open handle on StateStore ``namespace/store``'s backend, from its binding Secret.

    The binding's URL is the one workloads use: from outside the cluster it must be reachable
    (a port-forward, or a backend outside the cluster). Memory stores live inside the operator
    process and cannot be opened from here (``CliError``).
    """
    from lockyard.connection import open_connection
    from lockyard.kube.binding import read_secret_binding

    data = read_binding_secret(kube, namespace, store)
    try:
        binding, files = read_secret_binding(data, store)
    except ConfigError as exc:
        raise CliError(f"StateStore {namespace}/{store}: {exc}") from exc
    try:
        if binding.backend == "memory":
            raise CliError(
                f"StateStore {namespace}/{store} uses the memory backend: its locks live inside "
                "the operator's process and cannot be reached from here"
            )
        try:
            connection = await open_connection(binding.url)
        except Exception as exc:
            raise CliError(f"cannot open StateStore {namespace}/{store}: {exc}") from exc
        try:
            yield connection, binding
        finally:
            await connection.close()
    finally:
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)
