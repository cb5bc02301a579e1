"""Blocking store operations (issue 19): ``lockyard.sync`` beside redis-py's blocking client.

``get`` and ``set`` (a key out of 64), from one thread and from 16 threads that share one
``lockyard.sync`` handle, and the same from threads sharing one redis-py ``Redis`` client (its
own thread-safe pool): what an application thread would write by hand. Both run on the same
server in the same pass, in alternating order from pass to pass, after an untimed warm-up.
Reported, not judged: the issue sets its goals on lock cycles.

Records: section ``sync``, op ``<operation>@<threads>``, mode ``concurrent``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any

from lockyard.config import RedisConfig
from lockyard_dev.bench.results import Record, Results
from lockyard_dev.bench.stats import Sample, now_ns, settle_gc
from lockyard_dev.bench.throughput import KEYS, VALUE, op_name

SYNC_STORE_OPS = ("get", "set")
SYNC_THREADS = (1, 16)
LOCKYARD_SYNC = "lockyard.sync"
REDIS_PY_SYNC = "redis-py (blocking)"
WARM_UP = 200

#: One operation of one subject: called with the operation's index.
Call = Callable[[int], object]


def time_threads(call: Call, n: int, threads: int, max_seconds: float) -> Sample:
    """``n`` calls shared by ``threads`` threads; each call's latency."""
    counter = itertools.count()
    latencies: list[int] = []  # list.append is atomic: no lock around it
    errors: list[BaseException] = []
    settle_gc()
    started = now_ns()
    deadline = started + int(max_seconds * 1e9)

    def worker() -> None:
        try:
            while (i := next(counter)) < n:
                t0 = now_ns()
                call(i)
                t1 = now_ns()
                latencies.append(t1 - t0)
                if t1 > deadline:
                    return
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, name=f"bench-sync-{t}") for t in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if errors:
        raise errors[0]
    return Sample(len(latencies), now_ns() - started, latencies)


class _Subject:
    """A blocking client's ``get`` and ``set`` on 64 keys of its own."""

    def __init__(self, name: str, get: Call, set_: Call, close: Callable[[], object]) -> None:
        self.name = name
        self.calls = {"get": get, "set": set_}
        self.close = close


def _lockyard(config: RedisConfig) -> _Subject:
    import lockyard.sync

    handle = lockyard.sync.connect(config)
    store = handle.store
    keys = [f"bench:sync:state:k{i}" for i in range(KEYS)]
    return _Subject(
        LOCKYARD_SYNC,
        lambda i: store.get(keys[i % KEYS]),
        lambda i: store.set(keys[i % KEYS], VALUE, ttl=600),
        handle.close,  # the run's purge removes the keys, with the rest of its prefix
    )


def _redis_py(config: RedisConfig) -> _Subject:
    import redis

    client: Any = redis.Redis(
        host=config.host,
        port=config.port,
        db=config.db,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        decode_responses=True,
    )
    keys = [f"{config.prefix}:raw-sync:{uuid.uuid4().hex[:6]}:k{i}" for i in range(KEYS)]

    def close() -> None:
        try:
            client.delete(*keys)
        finally:
            client.close()

    return _Subject(
        REDIS_PY_SYNC,
        lambda i: client.get(keys[i % KEYS]),
        lambda i: client.set(keys[i % KEYS], VALUE, ex=600),
        close,
    )


def _measure(
    results: Results, config: RedisConfig, pass_no: int, n: int, max_seconds: float
) -> None:
    subjects = [_lockyard(config), _redis_py(config)]
    try:
        for subject in subjects:
            for op in SYNC_STORE_OPS:
                call = subject.calls[op]
                for i in range(WARM_UP):
                    call(i)
        ordered = subjects if pass_no % 2 == 0 else subjects[::-1]
        for op in SYNC_STORE_OPS:
            for threads in SYNC_THREADS:
                for subject in ordered:
                    sample = time_threads(subject.calls[op], n, threads, max_seconds)
                    results.add(
                        Record(
                            config.backend,
                            "sync",
                            subject.name,
                            op_name(op, threads),
                            "concurrent",
                            pass_no,
                            sample.figures(),
                        )
                    )
    finally:
        for subject in subjects:
            subject.close()


async def measure(
    results: Results, config: RedisConfig, pass_no: int, n: int, max_seconds: float
) -> None:
    """One pass of the blocking store table (its threads run off the benchmark's loop)."""
    await asyncio.to_thread(_measure, results, config, pass_no, n, max_seconds)
