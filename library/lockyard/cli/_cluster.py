"""Cluster access shared by ``lockyard locks`` and ``lockyard stores``.

Blocking calls through :class:`lockyard.kube.client.KubeClient` (one short-lived process makes
a handful of requests; an event loop would only add start-up time), on the library's
credentials rule and API paths. Opening a store's backend (``--verify``, ``break``) reads its
binding Secret through the library's one binding reader, :mod:`lockyard.kube.binding_reader`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lockyard.cli._output import EXIT_USAGE, CliError
from lockyard.errors import ConfigError
from lockyard.kube.client import KubeClient
from lockyard.kube.config import current_namespace
from lockyard.kube.errors import KubeApiError, KubeUnreachableError
from lockyard.kube.paths import stores_path

if TYPE_CHECKING:
    from lockyard.connection import Connection
    from lockyard.kube.api import KubeApi
    from lockyard.kube.binding import StoreBinding

#: Seconds to wait for a backend while verifying or breaking locks.
BACKEND_TIMEOUT_S = 15.0


def connect(args: argparse.Namespace) -> tuple[KubeClient, str]:
    """An API client from ``--kubeconfig``/``--context``, and the default namespace."""
    kubeconfig = getattr(args, "kubeconfig", None)
    context = getattr(args, "context", None)
    try:
        client = KubeClient.connect(kubeconfig, context)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    return client, current_namespace(kubeconfig, context)


def connect_scope(args: argparse.Namespace) -> tuple[KubeClient, str | None]:
    """:func:`connect`, and the namespace in scope: ``None`` with ``-A``, else ``-n`` or the
    kubeconfig context's."""
    if args.all_namespaces and args.namespace:
        raise CliError("-A and -n cannot be used together", EXIT_USAGE)
    kube, default_namespace = connect(args)
    return kube, None if args.all_namespaces else (args.namespace or default_namespace)


def api_problem(exc: KubeApiError, what: str) -> CliError:
    if isinstance(exc, KubeUnreachableError):
        return CliError(f"cannot reach the Kubernetes API while {what}: {exc.detail}")
    return CliError(f"{what} failed (HTTP {exc.status}): {exc.message}")


def list_stores(kube: KubeClient, namespace: str | None) -> list[dict[str, Any]]:
    """The StateStore objects in ``namespace`` (``None``: all); [] if the CRD is not installed."""
    try:
        listed = kube.get(stores_path(namespace))
    except KubeApiError as exc:
        if exc.not_found:
            return []  # the CRD is not installed: no StateStores
        raise api_problem(exc, "listing StateStores") from exc
    return list(listed.get("items") or [])


@contextlib.asynccontextmanager
async def open_store(
    api: KubeApi, namespace: str, store: str
) -> AsyncIterator[tuple[Connection, StoreBinding]]:
    """An open handle on StateStore ``namespace/store``'s backend, from its binding Secret.

    The binding's URL is the one workloads use: from outside the cluster it must be reachable
    (a port-forward, or a backend outside the cluster). Memory stores live inside the operator
    process and cannot be opened from here (``CliError``).
    """
    from lockyard.connection import open_connection
    from lockyard.kube.binding_reader import open_binding

    try:
        binding, files = await open_binding(api, namespace, store)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
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
