"""Where Kubernetes credentials and the default namespace come from: one rule for every caller.

A kubeconfig: the file given (``--kubeconfig``, ``connect(path)``), else ``$KUBECONFIG`` (read
at each call: the client itself reads it once, when imported), else ``~/.kube/config``; in the
context given (``--context``), else its current one. Except inside a pod when no file, no
context and no ``$KUBECONFIG`` are given: then the pod's service account.

The namespace follows the credentials: the kubeconfig context's (else ``default``), or the pod's
own. The ``kubernetes`` package is imported only here and only when needed, so reading a mounted
binding (and its namespace) works with the library alone.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockyard.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_NAMESPACE = "default"
MISSING_EXTRA = "pip install 'lockyard[kubernetes]'"


def in_cluster() -> bool:
    """Whether this process runs in a pod with a service account token."""
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


@dataclass(frozen=True, slots=True)
class KubeSource:
    """The credentials to use: a kubeconfig (file and context, ``None``: the defaults) or, when
    ``in_cluster``, the pod's service account."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False


def resolve(kubeconfig: str | None = None, context: str | None = None) -> KubeSource:
    """The source the rule in the module docstring picks."""
    if kubeconfig is None:
        kubeconfig = os.environ.get("KUBECONFIG") or None
        if kubeconfig is None and context is None and in_cluster():
            return KubeSource(in_cluster=True)
    return KubeSource(kubeconfig=kubeconfig, context=context)


def _module(name: str) -> Any:
    # Typed loosely: the package's annotations are partial, and strict typing stops here.
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the Kubernetes API needs the Python package {exc.name!r}: {MISSING_EXTRA}"
        ) from exc


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for :func:`resolve`'s source.

    Blocking (it may run an exec credential plugin): from asyncio, call it in a thread. Raises
    ``ConfigError`` when the credentials are missing or unusable, or the package is missing.
    """
    client = _module("kubernetes.client")
    config = _module("kubernetes.config")
    source = resolve(kubeconfig, context)
    configuration = client.Configuration()
    try:
        if source.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=source.kubeconfig,
                context=source.context,
                client_configuration=configuration,
                persist_config=False,  # never rewrite a user's kubeconfig
            )
    except Exception as exc:  # the loaders raise many unrelated types; each means "unusable"
        raise ConfigError(f"no usable Kubernetes credentials: {exc}") from exc
    # One request per call: urllib3's default Retry(total=3) re-sends a PUT or DELETE whose
    # reply was lost, so an applied conditional write came back as 409 Conflict (found by
    # make jepsen). A lost reply must stay an unknown outcome for the caller to judge.
    configuration.retries = False
    return client.ApiClient(configuration)


def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of :func:`resolve`'s source: the pod's, or the kubeconfig context's; else
    ``default`` (also when the kubeconfig is missing or the package is not installed)."""
    source = resolve(kubeconfig, context)
    if source.in_cluster:
        return pod_namespace() or DEFAULT_NAMESPACE
    try:
        config = importlib.import_module("kubernetes.config")
        contexts, active = config.list_kube_config_contexts(config_file=source.kubeconfig)
    except Exception:  # no package, no kubeconfig, or an unreadable one: the documented default
        return DEFAULT_NAMESPACE
    chosen = active
    if source.context is not None:
        chosen = next((c for c in contexts if c.get("name") == source.context), active)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE


def pod_namespace() -> str | None:
    """This pod's namespace (its service account's namespace file), or ``None`` outside one."""
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or None
    except OSError:
        return None
