"""The Redis backend: one server (``redis://``, ``rediss://``), a master found through Sentinel,
or a Redis Cluster (``redis+cluster://``).

Backend names ``redis``, ``redis-sentinel`` and ``redis-cluster``; driver ``redis.asyncio``
(hiredis parser when installed). Sentinel and Cluster are only different ways to obtain the
connections: the store, the locks and every script are the same. Every store and lock
operation is one round trip. The data layout, costs, locks, guarantees and failure behaviour are
described in docs/backends/redis.md (Cluster: docs/backends/redis-cluster.md). The modules, by
job:

- :mod:`.backend`: :class:`RedisBackend`, :func:`open_backend` and the guarantees.
- :mod:`.store`, :mod:`.locks`: the store and the lock manager.
- :mod:`.scripts`: every Lua script as a named constant, and the ``EVALSHA`` caller.
- :mod:`.keys`: the key layout of one prefix.
- :mod:`.signals`: the pub/sub subscription that wakes waiting acquires.
- :mod:`.autopipeline`, :mod:`.pipelined`: auto-pipelining, the concurrent commands of a
  handle written in batches on a few connections.
- :mod:`.pool`, :mod:`.generations`, :mod:`.packing`: connection settings, TLS, the pool
  (pipelines, ``WAIT``), retiring connections older than a dead one; hiredis packing.
- :mod:`.sentinel`: master discovery, the fencing epoch, following a failover.
- :mod:`.cluster`, :mod:`.cluster_routing`, :mod:`.cluster_keyspace`, :mod:`.cluster_backend`:
  Redis Cluster's client, routing by slot, scans over every master, the backend object;
  :mod:`.slots`: where keys land (docs/backends/redis-cluster.md).
- :mod:`.keyspace`: key-space scans and bulk removal on one server.
- :mod:`.errors`: the one place driver errors are mapped.
"""

from __future__ import annotations

from .backend import (
    REDIS_GUARANTEES,
    SENTINEL_GUARANTEES,
    SWEEP_INTERVAL_S,
    RedisBackend,
    open_backend,
)
from .errors import UNAVAILABLE_CODES, translate
from .keys import KEY_ROOT, KeyLayout, glob_escape
from .locks import FENCING_EPOCH_SHIFT, RedisLocks
from .pool import HEALTH_CHECK_INTERVAL_S, LeanCheckout
from .scripts import LuaScript, Scripts
from .sentinel import SENTINEL_REFRESH_S, EpochSentinel, SentinelPool, SentinelWatch
from .signals import LISTEN_POLL_S, PubSubListener
from .store import PURGE_BATCH, SCAN_COUNT, SWEEP_BATCH, RedisStateStore

__all__ = [
    "FENCING_EPOCH_SHIFT",
    "HEALTH_CHECK_INTERVAL_S",
    "KEY_ROOT",
    "LISTEN_POLL_S",
    "PURGE_BATCH",
    "REDIS_GUARANTEES",
    "SCAN_COUNT",
    "SENTINEL_GUARANTEES",
    "SENTINEL_REFRESH_S",
    "SWEEP_BATCH",
    "SWEEP_INTERVAL_S",
    "UNAVAILABLE_CODES",
    "EpochSentinel",
    "KeyLayout",
    "LeanCheckout",
    "LuaScript",
    "PubSubListener",
    "RedisBackend",
    "RedisLocks",
    "RedisStateStore",
    "Scripts",
    "SentinelPool",
    "SentinelWatch",
    "glob_escape",
    "open_backend",
    "translate",
]
