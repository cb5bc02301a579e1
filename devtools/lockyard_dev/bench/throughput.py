"""Concurrent throughput: one operation issued by 1, 16, 64 and 256 tasks at once.

Per backend and task count, each operation runs on Lockyard and on the raw driver's own pool,
back to back, in alternating order from pass to pass:

- ``get`` (a key out of 64), ``set`` (a key out of 64), ``lock_cycle`` (acquire + release, each
  task on a lock name of its own, so nothing waits for a holder);
- ``redis-py pool``: a stock ``BlockingConnectionPool`` client with Lockyard's size and connection
  settings (:func:`.baselines.redis_client_like_lockyards`): GET, SET, and ``SET NX PX`` + the
  owner-checked ``EVALSHA`` delete;
- ``asyncpg pool``: asyncpg's pool as the baselines set it up: a prepared primary-key SELECT and
  upsert on Lockyard's table, and ``pg_try_advisory_lock`` + ``pg_advisory_unlock``;
- Redis ``pipeline ceiling``: the same commands, as many as there are tasks, written as one
  batch on one socket and their replies read with hiredis: what the server and the loopback
  take, with no client around them. Its latency is that of a whole batch.

Records: section ``throughput``, op ``<operation>@<tasks>``, mode ``concurrent``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import hiredis

from lockyard.config import BackendConfig, PostgresConfig, RedisConfig
from lockyard.connection import Connection
from lockyard_dev.bench.baselines import redis_client_like_lockyards
from lockyard_dev.bench.lock_cycles import LOCK_TTL_S
from lockyard_dev.bench.results import LOCKYARD, Record, Results
from lockyard_dev.bench.stats import OPS_PER_S, Op, time_concurrent

THROUGHPUT_TASKS = (1, 16, 64, 256)
THROUGHPUT_OPS = ("get", "set", "lock_cycle")
KEYS = 64
VALUE = "x" * 32
REDIS_POOL = "redis-py pool"
ASYNCPG_POOL = "asyncpg pool"
CEILING = "pipeline ceiling"
#: Deletes KEYS[1] only while it holds ARGV[1] (the release of redis-py's Lock, in short).
RELEASE_IF_OWNER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def op_name(op: str, tasks: int) -> str:
    return f"{op}@{tasks}"


class Subject:
    """One side of the comparison: how it runs each operation (``None``: not offered)."""

    name: str

    async def prepare(self) -> None:
        return

    def op(self, name: str, tag: str) -> Op | None:
        raise NotImplementedError

    #: Operations each timed call makes (a batch of ``tasks``, for the ceiling).
    def batch(self, tasks: int) -> int:
        return 1

    async def close(self) -> None:
        return


class LockyardSubject(Subject):
    name = LOCKYARD

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._keys = [f"bench:tp:state:k{i}" for i in range(KEYS)]

    async def prepare(self) -> None:
        for key in self._keys:
            await self._connection.store.set(key, VALUE, ttl=600)

    def op(self, name: str, tag: str) -> Op | None:
        store, locks, keys = self._connection.store, self._connection.locks, self._keys

        async def get(i: int, task: int) -> object:
            return await store.get(keys[i % KEYS])

        async def set_(i: int, task: int) -> object:
            await store.set(keys[i % KEYS], VALUE, ttl=600)
            return None

        async def lock_cycle(i: int, task: int) -> object:
            guard = await locks.acquire(f"bench-tp-{tag}-{task}", LOCK_TTL_S, 30)
            await guard.release()
            return None

        return {"get": get, "set": set_, "lock_cycle": lock_cycle}[name]


class RedisPool(Subject):
    name = REDIS_POOL

    def __init__(self, config: RedisConfig) -> None:
        self._client = redis_client_like_lockyards(config, "lockyard-bench-tp-raw")
        self._prefix = f"lockyard-bench-tp-{uuid.uuid4().hex[:8]}:"
        self._sha = ""

    async def prepare(self) -> None:
        self._sha = await self._client.script_load(RELEASE_IF_OWNER)
        for i in range(KEYS):
            await self._client.set(f"{self._prefix}{i}", VALUE, ex=600)

    def op(self, name: str, tag: str) -> Op | None:
        client, prefix, sha = self._client, self._prefix, self._sha

        async def get(i: int, task: int) -> object:
            return await client.get(f"{prefix}{i % KEYS}")

        async def set_(i: int, task: int) -> object:
            return await client.set(f"{prefix}{i % KEYS}", VALUE, ex=600)

        async def lock_cycle(i: int, task: int) -> object:
            name, token = f"{prefix}lock-{tag}-{task}", f"t{i}"
            await client.set(name, token, nx=True, px=int(LOCK_TTL_S * 1000))
            return await client.evalsha(sha, 1, name, token)

        return {"get": get, "set": set_, "lock_cycle": lock_cycle}[name]

    async def close(self) -> None:
        try:
            await self._client.delete(*(f"{self._prefix}{i}" for i in range(KEYS)))
        finally:
            await self._client.aclose()


class RedisCeiling(Subject):
    """Batches of commands on one raw socket: the most the server and loopback take."""

    name = CEILING

    def __init__(self, config: RedisConfig) -> None:
        self._config = config
        self._prefix = f"lockyard-bench-ceiling-{uuid.uuid4().hex[:8]}:"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._sha = ""
        self._tasks = 1

    def batch(self, tasks: int) -> int:
        self._tasks = tasks
        return tasks

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        assert self._streams is not None
        reader, writer = self._streams
        writer.write(b"".join(hiredis.pack_command(command) for command in commands))
        parser = hiredis.Reader(encoding="utf-8")
        replies: list[Any] = []
        while len(replies) < len(commands):
            parser.feed(await reader.read(65536))
            while (reply := parser.gets()) is not False:
                replies.append(reply)
        return replies

    async def prepare(self) -> None:
        config = self._config
        self._streams = await asyncio.open_connection(config.host, config.port)
        setup: list[tuple[Any, ...]] = []
        if config.password is not None:
            secret = config.password.get_secret_value()
            setup.append(("AUTH", config.username, secret) if config.username else ("AUTH", secret))
        setup += [("SELECT", config.db), ("SCRIPT", "LOAD", RELEASE_IF_OWNER)]
        setup += [("SET", f"{self._prefix}{i}", VALUE, "EX", 600) for i in range(KEYS)]
        replies = await self._round_trip(setup)
        self._sha = str(replies[len(setup) - KEYS - 1])

    def op(self, name: str, tag: str) -> Op | None:
        prefix, sha = self._prefix, self._sha
        ttl_ms = int(LOCK_TTL_S * 1000)

        async def batch(i: int, task: int) -> object:
            tasks = self._tasks
            if name == "get":
                commands: list[tuple[Any, ...]] = [
                    ("GET", f"{prefix}{(i + k) % KEYS}") for k in range(tasks)
                ]
            elif name == "set":
                commands = [
                    ("SET", f"{prefix}{(i + k) % KEYS}", VALUE, "EX", 600) for k in range(tasks)
                ]
            else:
                names = [f"{prefix}lock-{tag}-{k}" for k in range(tasks)]
                commands = [("SET", n, f"t{i}", "NX", "PX", ttl_ms) for n in names]
                commands += [("EVALSHA", sha, 1, n, f"t{i}") for n in names]
            return await self._round_trip(commands)

        return batch

    async def close(self) -> None:
        if self._streams is None:
            return
        try:
            await self._round_trip([("DEL", *(f"{self._prefix}{i}" for i in range(KEYS)))])
        finally:
            self._streams[1].close()


class PostgresPool(Subject):
    name = ASYNCPG_POOL

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config
        self._pool: Any = None
        self._prefix = f"bench-tp-raw-{uuid.uuid4().hex[:8]}"

    async def prepare(self) -> None:
        import asyncpg

        from lockyard.backends.postgres import connect_kwargs, quote_schema

        async def no_reset(connection: Any) -> None:
            return

        self._schema = quote_schema(self._config.schema_name)
        self._pool = await asyncpg.create_pool(
            min_size=0,
            max_size=self._config.pool_size,
            reset=no_reset,
            **connect_kwargs(self._config, "lockyard-bench-raw"),
        )
        for i in range(KEYS):
            await self._pool.execute(self._upsert(), self._prefix, f"k{i}", VALUE)

    def _upsert(self) -> str:
        return (
            f"INSERT INTO {self._schema}.entries AS t (prefix, key, value, version) "
            "VALUES ($1, $2, $3, 1) ON CONFLICT (prefix, key) DO UPDATE "
            "SET value = excluded.value, version = t.version + 1"
        )

    def op(self, name: str, tag: str) -> Op | None:
        pool, prefix, upsert = self._pool, self._prefix, self._upsert()
        select = f"SELECT value FROM {self._schema}.entries WHERE prefix = $1 AND key = $2"
        base = int(tag, 16) * 1000  # advisory lock keys of this measurement's tasks

        async def get(i: int, task: int) -> object:
            return await pool.fetchval(select, prefix, f"k{i % KEYS}")

        async def set_(i: int, task: int) -> object:
            return await pool.execute(upsert, prefix, f"k{i % KEYS}", VALUE)

        async def lock_cycle(i: int, task: int) -> object:
            async with pool.acquire() as connection:  # session locks: one connection
                await connection.fetchval("SELECT pg_try_advisory_lock($1)", base + task)
                return await connection.fetchval("SELECT pg_advisory_unlock($1)", base + task)

        return {"get": get, "set": set_, "lock_cycle": lock_cycle}[name]

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await self._pool.execute(
                f"DELETE FROM {self._schema}.entries WHERE prefix = $1", self._prefix
            )
        finally:
            await self._pool.close()


def raw_subjects(config: BackendConfig) -> list[Subject]:
    """The raw drivers compared with Lockyard on this backend."""
    if isinstance(config, RedisConfig):
        return [RedisPool(config), RedisCeiling(config)]
    if isinstance(config, PostgresConfig):
        return [PostgresPool(config)]
    return []


async def measure(
    results: Results,
    backend: str,
    pass_no: int,
    subjects: list[Subject],
    *,
    iterations: int,
    max_seconds: float,
    tasks: tuple[int, ...] = THROUGHPUT_TASKS,
    progress: Callable[[str], None] = lambda line: None,
) -> None:
    """One pass: every operation at every task count, on every subject, back to back."""
    ordered = subjects if pass_no % 2 == 0 else subjects[::-1]
    for op in THROUGHPUT_OPS:
        for count in tasks:
            for subject in ordered:
                tag = uuid.uuid4().hex[:6]
                call = subject.op(op, tag)
                if call is None:
                    continue
                batch = subject.batch(count)
                workers = 1 if batch > 1 else count
                calls = max(1, iterations // batch)
                await _run(call, 2 * workers, workers, max_seconds)  # warm: pools filled
                sample = await time_concurrent(call, calls, workers, max_seconds)
                figures = sample.figures()
                figures[OPS_PER_S] *= batch
                figures["tasks"] = float(count)
                results.add(
                    Record(
                        backend,
                        "throughput",
                        subject.name,
                        op_name(op, count),
                        "concurrent",
                        pass_no,
                        figures,
                    )
                )
            progress(f"[{backend}] throughput {op} x{count}")


async def _run(call: Op, n: int, workers: int, max_seconds: float) -> None:
    async def untimed(i: int, task: int) -> object:
        return await call(-1 - i, task)

    await time_concurrent(untimed, n, workers, max_seconds)
