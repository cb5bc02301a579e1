"""Start each backend's real server for a stress, chaos or bench run, through the launchers of
this package, on free loopback ports; ``close()`` stops and removes it.

The launchers block, so callers in an event loop run :func:`launch` and ``close()`` in a worker
thread. ``durable=True`` gives Redis an append-only file synced on every write (``appendonly
yes``, ``appendfsync always``), so a SIGKILL loses nothing it acknowledged.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

#: The names the command lines accept, in the order they run.
BACKENDS = ("memory", "redis", "sentinel", "redis-cluster", "postgresql", "dynamodb")
DURABLE_REDIS = ("appendonly yes", "appendfsync always")
DYNAMODB_TABLE = "lockyard-stress"


@dataclass
class Launched:
    """A started backend: how to reach it with a given prefix, its server, how to stop it."""

    backend: str
    #: (prefix, operation timeout in seconds) -> URL
    make_url: Callable[[str, str], str]
    server: Any = None
    stop: Callable[[], None] = field(default=lambda: None)

    def url(self, prefix: str, operation_timeout: float) -> str:
        return self.make_url(prefix, f"{operation_timeout:g}")

    def close(self) -> None:
        self.stop()


def launch(backend: str, *, durable: bool = False) -> Launched:
    """Start ``backend``'s server (nothing for memory) and return how to reach it."""
    if backend == "memory":

        def memory_url(prefix: str, timeout: str) -> str:
            return f"memory://?{urlencode({'prefix': prefix, 'operation_timeout': timeout})}"

        return Launched("memory", memory_url)
    if backend == "redis":
        from lockyard_dev.servers.redis import RedisServer

        redis = RedisServer(extra_config=DURABLE_REDIS if durable else ())
        start_or_clean_up(redis.start, redis.remove)

        def redis_url(prefix: str, timeout: str) -> str:
            return redis.url(prefix, operation_timeout=timeout)

        return Launched("redis", redis_url, redis, redis.remove)
    if backend == "sentinel":
        from lockyard_dev.servers.redis import RedisSentinelSetup

        setup = RedisSentinelSetup()
        start_or_clean_up(setup.start, setup.remove)

        def sentinel_url(prefix: str, timeout: str) -> str:
            return setup.url(prefix, operation_timeout=timeout)

        return Launched("sentinel", sentinel_url, setup, setup.remove)
    if backend == "redis-cluster":
        from lockyard_dev.servers.redis_cluster import RedisClusterSetup

        cluster = RedisClusterSetup(extra_config=DURABLE_REDIS if durable else ())
        start_or_clean_up(cluster.start, cluster.close)

        def cluster_url(prefix: str, timeout: str) -> str:
            return cluster.url(prefix, operation_timeout=timeout)

        return Launched("redis-cluster", cluster_url, cluster, cluster.close)
    if backend == "postgresql":
        from lockyard_dev.servers.postgres import PostgresServer

        postgres = PostgresServer()
        start_or_clean_up(postgres.start, postgres.close)

        def postgres_url(prefix: str, timeout: str) -> str:
            return postgres.url(sslmode="disable", prefix=prefix, operation_timeout=timeout)

        return Launched("postgresql", postgres_url, postgres, postgres.close)
    if backend == "dynamodb":
        from lockyard_dev.servers.moto import MotoServer

        moto = MotoServer()

        def stop() -> None:
            try:
                if moto.running:
                    moto.thaw()
                moto.stop()
            finally:
                shutil.rmtree(moto.workdir, ignore_errors=True)

        start_or_clean_up(moto.start, stop)

        def dynamodb_url(prefix: str, timeout: str) -> str:
            return moto.url(DYNAMODB_TABLE, prefix, operation_timeout=timeout)

        return Launched("dynamodb", dynamodb_url, moto, stop)
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def start_or_clean_up(start: Callable[[], object], clean_up: Callable[[], None]) -> None:
    """Start a server; if that fails, remove what it left behind before raising."""
    try:
        start()
    except BaseException:
        clean_up()
        raise
