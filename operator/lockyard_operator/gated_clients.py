"""API clients whose every write passes the leader's gate first (see :mod:`.leader`).

Both clients the operator writes through are covered, each at the last moment it offers before
the request's bytes leave, i.e. after any wait for a connection (a TLS handshake takes many
event-loop turns, and a pause there must not let a write out later):

- kopf's ``aiohttp`` session, made by the login handler: trace hooks when the request starts
  and once its connection is ready (new or reused); from there to the socket write there is no
  network wait, one event-loop step at most;
- the reconciler's :class:`GatedKubeClient`: when the call starts and in the ``urllib3``
  connection's ``request()``, after the pool has connected it, synchronous to the send.

Both identify the replica in their ``User-Agent``, so the API server's audit log tells the
replicas apart.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf
import urllib3
import urllib3.connection

from lockyard._version import __version__
from lockyard.kube.api import CONNECT_TIMEOUT, KubeApi
from lockyard.kube.client import JSON, KubeClient, Timeout
from lockyard.kube.config import load_api_client

#: ``gate(method, target)`` returns if the request may go, and never returns otherwise.
Gate = Callable[[str, str], None]


def user_agent(identity: str) -> str:
    return f"lockyard-operator/{__version__} ({identity})"


class GatedKubeClient(KubeClient):
    """A :class:`KubeClient` that asks ``gate`` before every request (reads pass through)."""

    gate: Gate | None = None

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
        if self.gate is not None:
            self.gate(method, path)
        return super().request(
            method, path, params=params, body=body, content_type=content_type, timeout=timeout
        )


def gate_connections(pool_manager: urllib3.PoolManager, gate: Gate) -> None:
    """Make every connection of ``pool_manager`` ask ``gate`` right before it sends a request
    (the pool connects first: ``HTTPSConnectionPool._validate_conn``)."""

    class Connection(urllib3.connection.HTTPSConnection):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
            gate(method, url)
            super().request(method, url, *args, **kwargs)

    class Pool(urllib3.HTTPSConnectionPool):
        ConnectionCls = Connection

    pool_manager.pool_classes_by_scheme = {
        **pool_manager.pool_classes_by_scheme,
        "https": Pool,
    }
    pool_manager.clear()


async def connect_api(identity: str, gate: Gate | None) -> KubeApi:
    """The reconciler's client: credentials as :meth:`KubeApi.connect`, gated writes."""
    api_client = await asyncio.to_thread(load_api_client)
    client = GatedKubeClient(api_client, timeout=CONNECT_TIMEOUT, owns=True)
    client.gate = gate
    if gate is not None:
        gate_connections(api_client.rest_client.pool_manager, gate)
    client.api_client.user_agent = user_agent(identity)
    return KubeApi(client, owns=True)


async def connect_election_api(identity: str) -> KubeApi:
    """The election's own client (own threads and connections: a renewal never queues behind
    the reconciler's calls); a throttled attempt just fails, the next comes a retry later."""
    client = await asyncio.to_thread(KubeClient.connect, None, None, timeout=CONNECT_TIMEOUT)
    client.api_client.user_agent = user_agent(identity)
    return KubeApi(client, workers=2, throttled_attempts=1, owns=True)


def gated_session(info: kopf.ConnectionInfo, gate: Gate, identity: str) -> kopf.AiohttpSession:
    """kopf's session for ``info`` (as kopf builds its own), with ``gate`` before each request.

    Must be called in the event loop (an ``aiohttp`` session belongs to the loop it was made
    in). kopf closes it when it drops the credentials.
    """

    async def on_start(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        context.request = (params.method, str(params.url.path))
        gate(*context.request)

    async def on_connection_ready(
        session: aiohttp.ClientSession, context: types.SimpleNamespace, params: object
    ) -> None:
        gate(*getattr(context, "request", ("POST", "(unknown request)")))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_connection_create_end.append(on_connection_ready)
    trace.on_connection_reuseconn.append(on_connection_ready)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        # The Authorization header carries the token or basic credentials, as in kopf's own.
        headers={**info.as_http_headers(), "User-Agent": user_agent(identity)},
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        trace_configs=[trace],
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )
