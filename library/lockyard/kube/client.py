"""The Kubernetes API as plain JSON, over the official ``kubernetes`` package's ``ApiClient``.

Blocking: the CLI calls it directly, and :class:`lockyard.kube.api.KubeApi` runs it in worker
threads for asyncio code. A request goes through ``ApiClient.param_serialize`` and ``call_api``,
so kubeconfig auth, token refresh and TLS settings apply unchanged, and the body stays a dict:
the generated model classes validate every argument and build an object per item, which costs
milliseconds per Lease. Objects are exactly what the API serves, custom resources and core
objects alike.

Every call has a (connect, read) timeout. Errors raise :mod:`lockyard.kube.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from lockyard.kube.config import load_api_client
from lockyard.kube.errors import KubeApiError, KubeUnreachableError

#: (connect, read) seconds: a slow API server must never hold a caller for long.
DEFAULT_TIMEOUT = (3.0, 10.0)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

Timeout = float | tuple[float, float]


def _transport_errors() -> tuple[type[BaseException], ...]:
    # Imported when first needed: urllib3 and the client come with the kubernetes extra.
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError, OSError)


def _unreachable(exc: BaseException) -> KubeApiError:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:  # an ApiException carrying an HTTP answer
        return KubeApiError(status, str(getattr(exc, "reason", "") or ""))
    return KubeUnreachableError(f"{type(exc).__name__}: {exc}")


def decode_answer(status: int, reason: str, raw: bytes, retry_after: str = "") -> dict[str, Any]:
    """The JSON object of an answer (``{}`` when empty); ``KubeApiError`` for an error status."""
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {"message": raw[:500].decode(errors="replace").strip()}
    if not isinstance(answer, dict):
        answer = {"message": str(answer)[:500]}
    if not 200 <= status <= 299:
        wait = float(retry_after) if retry_after.isdigit() else None
        raise KubeApiError(status, reason, body=answer, retry_after=wait)
    return answer


def delete_options(resource_version: str | None) -> dict[str, Any] | None:
    """A DELETE's body: conditional on ``resource_version`` when given (409 if it changed)."""
    if resource_version is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"resourceVersion": resource_version},
    }


class KubeClient:
    """JSON requests through an ``ApiClient``; blocking (see the module docstring)."""

    def __init__(
        self, api_client: Any, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT, owns: bool = False
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._owns = owns

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        """A client on :func:`lockyard.kube.config.resolve`'s credentials (``ConfigError`` if
        none are usable); :meth:`close` closes them."""
        return cls(load_api_client(kubeconfig, context), timeout=timeout, owns=True)

    def close(self) -> None:
        """Close the ``ApiClient`` if this object created it."""
        if self._owns:
            self.api_client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = JSON,
        timeout: Timeout | None = None,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON answer (``{}`` when empty)."""
        api = self.api_client
        try:
            serialized = api.param_serialize(
                method,
                path,
                query_params=list(params.items()) if params else None,
                header_params={"Accept": JSON, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*serialized, _request_timeout=timeout or self.timeout)
            try:
                raw = response.read()
            finally:
                response.response.release_conn()
        except _transport_errors() as exc:
            raise _unreachable(exc) from exc
        retry_after = str(response.headers.get("Retry-After") or "")
        return decode_answer(response.status, str(response.reason or ""), raw, retry_after)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        try:
            return self.get(path)
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise

    def create(self, collection_path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection_path, body=dict(body))

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT; ``metadata.resourceVersion`` in ``body`` makes it conditional (409 if stale)."""
        return self.request("PUT", path, body=dict(body))

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    def delete(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        resource_version: str | None = None,
    ) -> bool:
        """Delete (only if still at ``resource_version``, when given: 409 otherwise);
        ``False`` if it was already gone."""
        try:
            self.request("DELETE", path, params=params, body=delete_options(resource_version))
        except KubeApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def watch(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type": ..., "object": ...}``) of a collection, as they arrive.

        The server ends the watch after ``timeout_seconds`` (or its own limit); an ``ERROR``
        event (410 Gone: ``resource_version`` too old) is yielded like the others.
        """
        query = {**(params or {}), "watch": "true", "allowWatchBookmarks": "false"}
        if resource_version:
            query["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            query["timeoutSeconds"] = str(timeout_seconds)
        read_timeout = None if timeout_seconds is None else timeout_seconds + self.timeout[1]
        api = self.api_client
        try:
            serialized = api.param_serialize(
                "GET", path, query_params=list(query.items()), header_params={"Accept": JSON},
                auth_settings=["BearerToken"],
            )  # fmt: skip
            response = api.call_api(*serialized, _request_timeout=(self.timeout[0], read_timeout))
        except _transport_errors() as exc:
            raise _unreachable(exc) from exc
        raw = response.response
        try:
            if not 200 <= response.status <= 299:
                decode_answer(response.status, str(response.reason or ""), raw.data or b"")
            pending = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip():
                yield json.loads(pending)
        except _transport_errors() as exc:
            raise _unreachable(exc) from exc
        finally:
            raw.close()  # possibly unread: never hand this connection back for reuse
            raw.release_conn()
