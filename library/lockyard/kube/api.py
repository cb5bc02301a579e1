"""A small asyncio JSON client for the Kubernetes API, on the official client's transport.

The official ``kubernetes`` distribution ships an asyncio client (``kubernetes.aio``); this module
borrows its configuration loading (kubeconfig, in-cluster service account, token refresh, exec
plugins) and HTTP transport, and speaks plain JSON: objects are dicts exactly as the API
serves them, which keeps custom resources and core objects alike and avoids a model layer.

Every call is one HTTP request with a timeout (repeated, after a pause, only when the server
answers 429: it did not act on it). Errors raise :class:`KubeApiError` carrying the HTTP status
and the API's own message (which never contains object data).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lockyard._resource import AsyncResource

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_S = 30.0
#: A throttled request (429, e.g. while the API server's cache warms up) is tried this often.
THROTTLED_ATTEMPTS = 4
MAX_RETRY_AFTER_S = 2.0

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(Exception):
    """The API answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        #: Seconds the server asked to wait (``Retry-After``), if it did.
        self.retry_after: float | None = None

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)


def _aio() -> Any:
    # Imported lazily (the kubernetes extra is optional) and typed loosely: its functions carry
    # no annotations, and strict typing stops at this boundary.
    return importlib.import_module("kubernetes.aio")


def in_cluster() -> bool:
    """Whether this process runs in a pod with a service account token."""
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


def object_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path of a collection or object (``group`` "" is the core group)."""
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class KubeApi(AsyncResource):
    """An open API client; ``await KubeApi.connect()``, then ``await api.close()``."""

    def __init__(self, api_client: Any) -> None:
        self._client = api_client

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        """In a pod: its service account; elsewhere: ``kubeconfig`` or ``$KUBECONFIG``."""
        aio = _aio()
        configuration = aio.client.Configuration()
        if kubeconfig is None and in_cluster():
            aio.config.load_incluster_config(client_configuration=configuration)
        else:
            # $KUBECONFIG read now: the client reads it once, when first imported.
            await aio.config.load_kube_config(
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        return cls(aio.client.ApiClient(configuration))

    async def close(self) -> None:
        await self._client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """One request (repeated after a 429, which the server did not act on); the decoded
        JSON answer (``{}`` when empty)."""
        for attempt in range(THROTTLED_ATTEMPTS):
            try:
                return await self._request_once(method, path, params, body, content_type)
            except KubeApiError as exc:
                if exc.status != 429 or attempt == THROTTLED_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after or 0.2 * 2**attempt, MAX_RETRY_AFTER_S))
        raise AssertionError("unreachable")

    async def _request_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        content_type: str,
    ) -> dict[str, Any]:
        import aiohttp  # a dependency of the kubernetes client; loaded by now

        client = self._client
        try:
            serialized = await client.param_serialize(
                method,
                path,
                query_params=list(params.items()) if params else None,
                header_params={"Content-Type": content_type, "Accept": JSON},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = await client.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT_S)
            raw = await response.read()
        except TimeoutError as exc:
            raise KubeApiError(0, "Timeout", "the Kubernetes API did not answer in time") from exc
        except (OSError, aiohttp.ClientError) as exc:
            raise KubeApiError(0, "Unreachable", f"cannot reach the Kubernetes API: {exc}") from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"message": raw.decode(errors="replace").strip()[:500]}
        if not isinstance(answer, dict):
            answer = {"message": str(answer)[:500]}
        if not 200 <= response.status < 300:
            error = KubeApiError(
                response.status, str(response.reason or ""), str(answer.get("message", ""))
            )
            retry_after = response.headers.get("Retry-After", "")
            error.retry_after = float(retry_after) if retry_after.isdigit() else None
            raise error
        return answer

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        try:
            return await self.get(path)
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise

    async def create(self, collection_path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", collection_path, body=dict(body))

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=dict(body))

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def delete(self, path: str, params: Mapping[str, str] | None = None) -> bool:
        """Delete; ``False`` if it was already gone."""
        try:
            await self.request("DELETE", path, params=params)
        except KubeApiError as exc:
            if exc.not_found:
                return False
            raise
        return True
