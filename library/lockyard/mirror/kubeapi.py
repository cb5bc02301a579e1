"""A thin, synchronous JSON client over the official ``kubernetes`` package's ``ApiClient``.

The mirror, the reaper and the CLI need a handful of calls (Leases, Secrets, StateStores) and
need them cheap: the generated API classes validate every argument and build a model object per
item, which costs milliseconds per Lease and would steal the event loop's CPU (the GIL) from lock
operations. Here a request goes through ``ApiClient.param_serialize`` (so kubeconfig auth, token
refresh and TLS settings apply unchanged) and ``ApiClient.call_api``, and the body is plain JSON.

Every call has a timeout. Failures raise :class:`KubeApiError`: ``status`` is the HTTP status, or
0 when the API server could not be reached or did not answer in time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client as _k8s_client
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from lockyard.errors import ConfigError

# The package's annotations are partial; it is used through these untyped handles only.
k8s_client: Any = _k8s_client
k8s_config: Any = _k8s_config

#: (connect, read) seconds: a slow API server must never hold a worker for long.
DEFAULT_TIMEOUT = (3.0, 10.0)

LEASES = "/apis/coordination.k8s.io/v1"
JSON = "application/json"


class KubeApiError(Exception):
    """A Kubernetes API call failed; ``status`` 0 means unreachable or timed out."""

    def __init__(self, status: int, reason: str, body: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.body = dict(body or {})
        message = self.body.get("message") or reason
        super().__init__(f"{status or 'unreachable'}: {message}" if status else message)

    @property
    def api_reason(self) -> str:
        """The Status object's CamelCase reason (``AlreadyExists``, ``Conflict``, ...), or ''."""
        reason = self.body.get("reason")
        return reason if isinstance(reason, str) else ""

    @property
    def transient(self) -> bool:
        """Worth retrying later unchanged: unreachable, throttled, server-side, or not allowed
        *yet* (RBAC can be granted after the fact)."""
        return self.status in (0, 401, 403, 408, 429) or self.status >= 500


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster credentials inside a pod, else the kubeconfig.

    ``kubeconfig``/``context`` force the kubeconfig (``None``: ``$KUBECONFIG`` or
    ``~/.kube/config``). Raises ``ConfigError`` when neither is usable.
    """
    configuration = k8s_client.Configuration()
    if kubeconfig is None:
        # The client reads $KUBECONFIG once, when imported; read it now instead.
        kubeconfig = os.environ.get("KUBECONFIG") or None
    in_cluster = kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConfigError(f"no usable Kubernetes credentials: {exc}") from exc
    return k8s_client.ApiClient(configuration)


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the kubeconfig's (current) context, or of this pod, else ``default``."""
    if kubeconfig is None and context is None and not os.environ.get("KUBECONFIG"):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                return handle.read().strip() or "default"
        except OSError:
            pass
    try:
        contexts, current = k8s_config.list_kube_config_contexts(
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None
        )
    except (k8s_config.ConfigException, OSError, TypeError, ValueError):
        return "default"
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), current)
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


class KubeClient:
    """JSON requests through an ``ApiClient``; blocking (run it in a worker thread)."""

    def __init__(
        self, api_client: Any, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT, owns: bool = False
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._owns = owns

    def close(self) -> None:
        """Close the ``ApiClient`` if this object created it."""
        if self._owns:
            self.api_client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON body (``{}`` when empty)."""
        api = self.api_client
        try:
            request = api.param_serialize(
                method,
                path,
                query_params=list(query),
                header_params={"Accept": JSON, "Content-Type": JSON},
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*request, _request_timeout=timeout or self.timeout)
            try:
                data = response.read()
            finally:
                response.response.release_conn()
        except ApiException as exc:
            raise KubeApiError(exc.status or 0, str(exc.reason)) from exc
        except (Urllib3Error, OSError) as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data[:200].decode(errors="replace")}
        if not 200 <= response.status <= 299:
            raise KubeApiError(response.status, str(response.reason), decoded)
        if not isinstance(decoded, dict):
            raise KubeApiError(response.status, "the API server sent a non-object body")
        return decoded

    # -- the calls Lockyard makes --------------------------------------------------------------
    def list_leases(
        self,
        namespace: str | None,
        label_selector: str,
        timeout: float | tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """A LeaseList (``namespace=None``: every namespace, in one request)."""
        where = f"/namespaces/{namespace}" if namespace else ""
        return self.request(
            "GET",
            f"{LEASES}{where}/leases",
            query=[("labelSelector", label_selector)],
            timeout=timeout,
        )

    def lease_path(self, namespace: str, name: str = "") -> str:
        tail = f"/{name}" if name else ""
        return f"{LEASES}/namespaces/{namespace}/leases{tail}"

    def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", self.lease_path(namespace, name))

    def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", self.lease_path(namespace), body=lease)

    def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """PUT; ``metadata.resourceVersion`` in ``lease`` makes it conditional (409 if stale)."""
        return self.request("PUT", self.lease_path(namespace, name), body=lease)

    def delete_lease(self, namespace: str, name: str, resource_version: str | None) -> None:
        """DELETE, only if the Lease is still at ``resource_version`` (409 otherwise)."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        self.request("DELETE", self.lease_path(namespace, name), body=options)

    def watch(
        self,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type": ..., "object": ...}``) of a collection, as they arrive.

        The server ends the watch after ``timeout_seconds`` (or its own limit); an ``ERROR``
        event (410 Gone: ``resource_version`` too old) is yielded like the others.
        """
        params = [*query, ("watch", "true"), ("allowWatchBookmarks", "false")]
        if resource_version:
            params.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            params.append(("timeoutSeconds", str(timeout_seconds)))
        read_timeout = None if timeout_seconds is None else timeout_seconds + self.timeout[1]
        api = self.api_client
        try:
            request = api.param_serialize(
                "GET", path, query_params=params, header_params={"Accept": JSON},
                auth_settings=["BearerToken"],
            )  # fmt: skip
            response = api.call_api(*request, _request_timeout=(self.timeout[0], read_timeout))
        except ApiException as exc:
            raise KubeApiError(exc.status or 0, str(exc.reason)) from exc
        except (Urllib3Error, OSError) as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        raw = response.response
        try:
            if not 200 <= response.status <= 299:
                try:
                    body = json.loads(raw.data or b"{}")
                except ValueError:
                    body = {}
                raise KubeApiError(response.status, str(response.reason), body)
            pending = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip():
                yield json.loads(pending)
        except (Urllib3Error, OSError) as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            raw.close()  # possibly unread: never hand this connection back for reuse
            raw.release_conn()
