"""Turning mirroring on for a handle, at most once: one :class:`LeaseMirror` per connection,
observing its locks, semaphores and read-write locks."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

from lockyard.connection import Connection
from lockyard.errors import ConfigError
from lockyard.kube.api import KubeApi
from lockyard.kube.client import DEFAULT_TIMEOUT, KubeClient
from lockyard.kube.config import load_api_client
from lockyard.mirror.holder import Holder
from lockyard.mirror.lease_mirror import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_LOCKS,
    DEFAULT_MAX_WRITES_PER_SECOND,
    DEFAULT_REWRITE_INTERVAL_S,
    LeaseMirror,
)
from lockyard.permits import PermitTable

log = logging.getLogger("lockyard.mirror")

#: The mirror of each mirrored connection (so enabling twice does not mirror twice).
_MIRRORS: weakref.WeakKeyDictionary[Connection, LeaseMirror] = weakref.WeakKeyDictionary()


def enable_lease_mirroring(
    connection: Connection,
    store_name: str,
    namespace: str,
    api_client: Any = None,
    *,
    holder: Holder | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
    max_writes_per_second: float = DEFAULT_MAX_WRITES_PER_SECOND,
    max_locks: int = DEFAULT_MAX_LOCKS,
    request_timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    rewrite_interval: float = DEFAULT_REWRITE_INTERVAL_S,
) -> LeaseMirror:
    """Mirror the locks ``connection`` holds into Leases in ``namespace``, as store ``store_name``.

    Call it from a coroutine (it starts the worker task). ``api_client`` is a
    ``kubernetes.client.ApiClient``; by default one is made by the credentials rule of
    :mod:`lockyard.kube.config`, and closed with the mirror. Each API call runs in the mirror's
    own thread and gives up after ``request_timeout`` (connect, read) seconds. The mirror stops
    when the connection closes (or on ``await mirror.close()``). Idempotent: a connection
    already mirrored returns its mirror. Raises ``ConfigError`` without usable credentials.
    """
    existing = _MIRRORS.get(connection)
    if existing is not None and not existing.closed:
        return existing
    owns = api_client is None
    client = KubeClient(
        load_api_client() if owns else api_client, timeout=request_timeout, owns=owns
    )
    # One thread: the mirror's calls are sequential, and a hung call must not start more.
    # No retry on 429 inside a call: the mirror backs off for the whole round instead.
    api = KubeApi(client, workers=1, throttled_attempts=1, owns=True)
    mirror = LeaseMirror(
        api,
        store=store_name,
        namespace=namespace,
        backend=connection.backend,
        clock=connection.locks.clock,
        holder=holder,
        flush_interval=flush_interval,
        max_writes_per_second=max_writes_per_second,
        max_locks=max_locks,
        rewrite_interval=rewrite_interval,
    )
    connection.locks.add_observer(mirror)
    for table in permit_tables(connection):
        table.add_observer(mirror)  # one Lease per semaphore permit and read-write holder
    connection.on_close(mirror.close)
    _MIRRORS[connection] = mirror
    return mirror


def permit_tables(connection: Connection) -> list[PermitTable]:
    """The semaphore and read-write lock tables of ``connection`` (those its backend offers:
    a third-party backend may have neither)."""
    tables = []
    for feature in ("semaphores", "rwlocks"):
        try:
            tables.append(getattr(connection, feature).table)
        except ConfigError:
            continue
    return tables


def mirror_of(connection: Connection) -> LeaseMirror | None:
    """The open mirror attached to ``connection``, if any."""
    mirror = _MIRRORS.get(connection)
    return None if mirror is None or mirror.closed else mirror


def maybe_mirror(
    connection: Connection,
    binding: Any,
    *,
    store_name: str,
    namespace: str,
    api_client: Any = None,
) -> LeaseMirror | None:
    """Turn mirroring on when the store's binding says so (``lease-mirroring: "true"``).

    ``binding`` is a ``lockyard.kube.StoreBinding`` or the binding Secret's decoded data.
    Missing credentials (or a missing ``kubernetes`` package) only log a warning and return
    ``None``: mirroring must never stop a workload.
    """
    if isinstance(binding, Mapping):
        enabled = str(binding.get("lease-mirroring", "false")).strip().lower() == "true"
    else:
        enabled = bool(getattr(binding, "lease_mirroring", False))
    if not enabled:
        return None
    try:
        return enable_lease_mirroring(connection, store_name, namespace, api_client)
    except ConfigError as exc:
        log.warning("lease mirroring for store %s/%s is off: %s", namespace, store_name, exc)
        return None
