"""The Kubernetes API for asyncio code: :class:`~lockyard.kube.client.KubeClient` in threads.

The official ``kubernetes`` client is blocking, so every call runs in a worker thread of the
client's own pool: the event loop never waits on the network, and a hung API server holds a
thread (up to the call's timeout), never the loop. The same client, credentials rule, errors and
paths serve the CLI (directly), the mirror (one thread: its calls are sequential anyway) and the
operator.

A call is one request, repeated after a pause only when the server answered 429 (it did not act
on it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lockyard._resource import AsyncResource
from lockyard.kube.client import JSON, MERGE_PATCH, KubeClient, Timeout, delete_options
from lockyard.kube.errors import KubeApiError
from lockyard.kube.paths import object_path

__all__ = ["KubeApi", "KubeApiError", "object_path"]

T = TypeVar("T")

#: Calls in flight at once per client (the operator works on many stores concurrently).
DEFAULT_WORKERS = 8
#: A throttled request (429, e.g. while the API server's cache warms up) is tried this often.
THROTTLED_ATTEMPTS = 4
MAX_RETRY_AFTER_S = 2.0
#: (connect, read) seconds for clients made by :meth:`KubeApi.connect`.
CONNECT_TIMEOUT = (5.0, 30.0)


class KubeApi(AsyncResource):
    """An asyncio face of a :class:`KubeClient`; ``await KubeApi.connect()``, then ``close()``.

    ``KubeApi(client)`` borrows ``client``; with ``owns=True``, :meth:`close` closes it too.
    ``throttled_attempts=1`` leaves 429s to the caller (the mirror backs off on its own).
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        workers: int = DEFAULT_WORKERS,
        throttled_attempts: int = THROTTLED_ATTEMPTS,
        owns: bool = False,
    ) -> None:
        self.client = client
        self._owns = owns
        self._throttled_attempts = max(1, throttled_attempts)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="lockyard-kube"
        )
        self._closed = False

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        timeout: tuple[float, float] = CONNECT_TIMEOUT,
        workers: int = DEFAULT_WORKERS,
    ) -> KubeApi:
        """A client on the credentials rule of :mod:`lockyard.kube.config` (``ConfigError``
        when none are usable)."""
        # In a thread: loading may run an exec credential plugin.
        client = await asyncio.to_thread(KubeClient.connect, kubeconfig, context, timeout=timeout)
        return cls(client, workers=workers, owns=True)

    async def close(self) -> None:
        """Stop the worker threads without waiting for a call still in flight; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns:
            self.client.close()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` (a blocking call on :attr:`client`) in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = JSON,
        timeout: Timeout | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer (``{}`` when empty)."""

        def once() -> dict[str, Any]:
            return self.client.request(
                method, path, params=params, body=body, content_type=content_type, timeout=timeout
            )

        for attempt in range(self._throttled_attempts):
            try:
                return await self.call(once)
            except KubeApiError as exc:
                if exc.status != 429 or attempt == self._throttled_attempts - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after or 0.2 * 2**attempt, MAX_RETRY_AFTER_S))
        raise AssertionError("unreachable")

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
        """PUT; ``metadata.resourceVersion`` in ``body`` makes it conditional (409 if stale)."""
        return await self.request("PUT", path, body=dict(body))

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def delete(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        resource_version: str | None = None,
    ) -> bool:
        """Delete (only if still at ``resource_version``, when given: 409 otherwise);
        ``False`` if it was already gone."""
        try:
            await self.request("DELETE", path, params=params, body=delete_options(resource_version))
        except KubeApiError as exc:
            if exc.not_found:
                return False
            raise
        return True
