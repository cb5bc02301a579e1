"""Raw-driver baselines: the same single round trip a Lockyard operation makes, without Lockyard.

Each store operation is paired with the driver call closest to its one round trip, measured
right after it in the same mode, so the ratio Lockyard/raw isolates Lockyard's own cost
(validation, key building, the operation runner, result decoding) from the server's and the
driver's:

- Redis (redis-py, a client with Lockyard's own connection settings, :func:`_like_lockyards`:
  a blocking pool of its size, no socket timeout, decoding, no retries): ``set`` -> SET,
  ``increment`` -> INCRBY, ``check_and_set`` -> SET NX PX on a new key
  (the driver's own set-if-absent: a write, which a replica receives as it receives Lockyard's;
  on a cluster with replicas that propagation costs the master about 40 µs a write here, which
  an empty script never pays), ``compare_and_swap`` -> EVALSHA of the plainest versioned
  compare-and-set (HGET of the version, HSET of value and version, PEXPIRE: a write, as
  PostgreSQL's pair is a conditional UPDATE), the operations Lockyard runs as one plain command
  (``get`` = HGET, ``get_versioned`` = HMGET, the index ZADD / ZREM / ZRANGEBYSCORE) -> GET,
  and every other operation Lockyard runs as a Lua script -> EVALSHA of an empty script;
- Redis Cluster (redis-py's asyncio ``RedisCluster``, with the same settings): the same calls,
  each on one key so that it is routed to one master as Lockyard's are (the EVALSHA names one
  key). Scans and due reads fan out to every bucket of a kind on a cluster: their ratio against
  a one-key call is the cost of the fan-out, reported apart from the goal;
- PostgreSQL (asyncpg, a pool set up like Lockyard's: same size, no per-release reset round
  trip; Lockyard's own table, under a prefix of its own): reads -> a prepared
  SELECT by primary key, ``compare_and_swap`` -> a prepared conditional UPDATE ... RETURNING,
  other writes -> a prepared INSERT ... ON CONFLICT upsert;
- DynamoDB (aioboto3, a client set up like Lockyard's: same pool, timeouts, no botocore
  retries): reads -> GetItem (strongly consistent), writes -> PutItem, on a scratch table.

Scans and due reads return 20 records. On PostgreSQL they are paired with a prepared SELECT
returning the same 20 rows from the same indexes (a key range, a ``kind``, a due range). On
Redis, with the same structures read the plainest way in one round trip: a sorted-set index
and a hash per record, read by a script that lists the index (by a lex range, or whole) and
HGETs each record; the due index by ZRANGEBYSCORE. On Redis Cluster and DynamoDB they are
paired with the one-key call above, so their ratios include the cost of the larger reply (and
on a cluster of the fan-out); the report says so next to them.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from lockyard.config import (
    BackendConfig,
    DynamoDBConfig,
    PostgresConfig,
    RedisClusterConfig,
    RedisConfig,
)
from lockyard.store import MAX_INDEX_TIMESTAMP_MS
from lockyard_dev.bench.stats import Op
from lockyard_dev.bench.store_ops import KEY_TTL_S, SCAN_MATCHES

READ_OPS = frozenset(
    {"get", "get_versioned", "scan_keys", "scan_keys_by_kind", "get_expired_timeouts"}
)
RAW_KEYS = 64
#: Records each many-record read returns, and the entries around them it must skip.
RAW_MATCHES, RAW_OTHERS = SCAN_MATCHES, 180
RAW_DUE_AT_MS = 1_000_000


class RawDriver(abc.ABC):
    """One driver, connected like Lockyard's backend, timing its plainest calls."""

    driver: str

    @abc.abstractmethod
    def call_for(self, op: str) -> str:
        """The raw call paired with Lockyard's ``op``."""

    @abc.abstractmethod
    def op(self, call: str) -> Op:
        """The timed raw call, with the same ``(i, task)`` signature as a store op."""

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Connect and set up, untimed (scripts, tables, rows the reads find)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


# -- Redis -----------------------------------------------------------------------------------
EMPTY_SCRIPT = ""  # no KEYS, no ARGV; returns nil: a pure EVALSHA round trip
RAW_CLIENT_NAME = "lockyard-bench-raw"


def _like_lockyards(config: RedisConfig, client_name: str) -> dict[str, Any]:
    """The connection settings of Lockyard's own Redis connections (timeouts, no retries,
    decoding, keep-alive, health checks), under ``client_name``.

    Taken from the library rather than restated: a raw baseline set up otherwise measures the
    difference. A socket timeout alone makes redis-py wrap every send in ``asyncio.wait_for``
    and every read in a timeout (about 17 us of a 70 us GET here), and Lockyard sets none.
    """
    from lockyard.backends.redis.pool import connection_kwargs

    return connection_kwargs(config) | {"client_name": client_name}


def redis_client_like_lockyards(config: RedisConfig, client_name: str) -> Any:
    """A stock redis-py asyncio client on a ``BlockingConnectionPool`` of Lockyard's size,
    with Lockyard's connection settings: the raw driver as an application would set it up.
    The client owns its pool: ``aclose()`` closes the pool's connections too."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool(
        host=config.host,
        port=config.port,
        max_connections=config.pool_size,
        timeout=None,
        **_like_lockyards(config, client_name),
    )
    return Redis.from_pool(pool)


#: Lockyard ops that are one plain command (HGET, HMGET, ZADD, ZREM, ZRANGEBYSCORE) are paired
#: with GET; ``set``/``increment`` with SET/INCRBY; ``check_and_set`` with the driver's own
#: set-if-absent; ``compare_and_swap`` with the plainest script doing it; every other Lua-script
#: op with EVALSHA of an empty script.
REDIS_CALLS = {
    "check_and_set": "SET NX PX",
    "compare_and_swap": "EVALSHA versioned CAS",
    "get": "GET",
    "get_versioned": "GET",
    "index_timeout": "GET",
    "remove_timeout_index": "GET",
    "get_expired_timeouts": "GET",
    "set": "SET",
    "increment": "INCRBY",
}


#: The raw calls paired with the reads that return many records (single Redis; a cluster fans
#: those out, and its pair stays the one-key call).
REDIS_MANY_ROW_CALLS = {
    "scan_keys": "EVALSHA lex range + HGETs",
    "scan_keys_by_kind": "EVALSHA index + HGETs",
    "get_expired_timeouts": "ZRANGEBYSCORE",
}
# KEYS: [1] the index (sorted set). ARGV: [1] the records' key prefix, [2]/[3] a ZRANGEBYLEX
# range, or '' for the whole index. Returns a flat array member1, value1, ...: the index's
# members in the range and the field 'v' of each member's hash.
RAW_SCAN_SCRIPT = """
local members
if ARGV[2] == '' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])
end
local found = {}
for _, member in ipairs(members) do
  found[#found + 1] = member
  found[#found + 1] = redis.call('HGET', ARGV[1] .. member, 'v')
end
return found
"""


# KEYS: [1] the record (a hash: value 'v', version 'ver'). ARGV: [1] the expected version, [2]
# the new value, [3] its TTL in ms. Returns {1, new version} after writing, {0, version} when the
# version differs.
RAW_CAS_SCRIPT = """
local version = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if version ~= tonumber(ARGV[1]) then
  return {0, version}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ver', version + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, version + 1}
"""


class RedisRaw(RawDriver):
    driver = "redis-py"
    #: Which reads of many records get a baseline of their own (see REDIS_MANY_ROW_CALLS).
    many_row_calls: ClassVar[Mapping[str, str]] = REDIS_MANY_ROW_CALLS
    #: ``redis.asyncio.Redis``, or ``RedisCluster`` in the subclass (same calls).
    _client: Any

    def __init__(self, config: RedisConfig) -> None:
        self._client = redis_client_like_lockyards(config, RAW_CLIENT_NAME)
        self._reset_state()

    def _reset_state(self) -> None:
        """A key prefix of this run's own, the scripts not loaded yet, new keys from 0."""
        self._prefix = f"lockyard-bench-raw-{uuid.uuid4().hex[:8]}:"
        self._sha = self._scan_sha = self._cas_sha = ""
        self._new_keys = itertools.count()
        #: The version each task's record is at (every compare-and-set passes it, and swaps).
        self._cas_versions: dict[int, int] = {}

    def call_for(self, op: str) -> str:
        return self.many_row_calls.get(op) or REDIS_CALLS.get(op, "EVALSHA")

    async def prepare(self) -> None:
        client, prefix = self._client, self._prefix
        self._sha = await client.script_load(EMPTY_SCRIPT)
        self._cas_sha = await client.script_load(RAW_CAS_SCRIPT)
        for i in range(RAW_KEYS):
            await client.set(f"{prefix}{i}", "x" * 32, ex=600)
        if not self.many_row_calls:
            return
        self._scan_sha = await client.script_load(RAW_SCAN_SCRIPT)
        # RAW_MATCHES records in the index and due; as many beside them outside the lex range,
        # and RAW_OTHERS index entries due later (as PostgreSQL's raw rows are laid out).
        for i in range(RAW_MATCHES):
            for member in (f"item-{i:03d}", f"other-{i:03d}"):
                await client.hset(f"{prefix}e:{member}", "v", "x" * 32)
                await client.expire(f"{prefix}e:{member}", 600)
            await client.zadd(f"{prefix}scan", {f"item-{i:03d}": 0, f"other-{i:03d}": 0})
            await client.zadd(f"{prefix}kind", {f"item-{i:03d}": 0})
        await client.zadd(
            f"{prefix}due",
            {f"due-{i:03d}": RAW_DUE_AT_MS - i for i in range(RAW_MATCHES)}
            | {f"later-{i:03d}": RAW_DUE_AT_MS + 1 + i for i in range(RAW_OTHERS)},
        )
        for index in ("scan", "kind", "due"):
            await client.expire(f"{prefix}{index}", 600)

    def op(self, call: str) -> Op:
        client, prefix, sha = self._client, self._prefix, self._sha

        async def get(i: int, task: int) -> object:
            return await client.get(f"{prefix}{i % RAW_KEYS}")

        async def set_(i: int, task: int) -> object:
            return await client.set(f"{prefix}{i % RAW_KEYS}", "x" * 32, ex=600)

        async def incrby(i: int, task: int) -> object:
            return await client.incrby(f"{prefix}n{i % RAW_KEYS}", 1)

        async def set_nx(i: int, task: int) -> object:
            # A new key each call, as Lockyard's check_and_set creates a new entry each call;
            # it expires as Lockyard's do (nothing to delete afterwards).
            key = f"{prefix}nx{next(self._new_keys)}"
            return await client.set(key, "seen", nx=True, px=KEY_TTL_S * 1000)

        async def evalsha(i: int, task: int) -> object:
            keys = self._script_keys(i)
            return await client.evalsha(sha, len(keys), *keys)

        cas_sha, versions = self._cas_sha, self._cas_versions

        async def cas(i: int, task: int) -> object:
            # A record per task, as Lockyard's compare_and_swap has, so that every call swaps.
            swapped, version = await client.evalsha(
                cas_sha, 1, f"{prefix}cas{task}", versions.get(task, 0), "x" * 32, 600_000
            )
            versions[task] = version
            return swapped

        scan_sha, records = self._scan_sha, f"{prefix}e:"

        async def scan_range(i: int, task: int) -> object:
            return await client.evalsha(
                scan_sha, 1, f"{prefix}scan", records, "[item-", "(item-\xff"
            )

        async def scan_index(i: int, task: int) -> object:
            return await client.evalsha(scan_sha, 1, f"{prefix}kind", records, "", "")

        async def due(i: int, task: int) -> object:
            return await client.zrangebyscore(f"{prefix}due", "-inf", RAW_DUE_AT_MS)

        calls = {
            "GET": get,
            "SET": set_,
            "INCRBY": incrby,
            "SET NX PX": set_nx,
            "EVALSHA versioned CAS": cas,
            "EVALSHA lex range + HGETs": scan_range,
            "EVALSHA index + HGETs": scan_index,
            "ZRANGEBYSCORE": due,
        }
        return calls.get(call, evalsha)

    def _script_keys(self, i: int) -> tuple[str, ...]:
        return ()

    async def _delete(self, keys: list[str]) -> None:
        await self._client.delete(*keys)

    async def close(self) -> None:
        try:
            prefix = self._prefix
            keys = [f"{prefix}{i}" for i in range(RAW_KEYS)]
            keys += [f"{prefix}n{i}" for i in range(RAW_KEYS)]
            keys += [f"{prefix}cas{task}" for task in self._cas_versions]
            if self.many_row_calls:
                keys += [f"{prefix}{index}" for index in ("scan", "kind", "due")]
                keys += [
                    f"{prefix}e:{kind}-{i:03d}"
                    for kind in ("item", "other")
                    for i in range(RAW_MATCHES)
                ]
            await self._delete(keys)
        finally:
            await self._client.aclose()


#: Connections per node the raw cluster client may open (more than any benchmark's tasks).
RAW_CLUSTER_CONNECTIONS = 1024


class RedisClusterRaw(RedisRaw):
    driver = "redis-py RedisCluster"
    many_row_calls: ClassVar[Mapping[str, str]] = {}  # scans fan out on a cluster

    # Its own client, set up as Lockyard's cluster client is; the calls are RedisRaw's.
    def __init__(self, config: RedisClusterConfig) -> None:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        from lockyard.backends.redis.cluster import server_settings

        self._client = RedisCluster(
            startup_nodes=[ClusterNode(node.host, node.port) for node in config.nodes],
            # RedisCluster's per-node pools raise MaxConnectionsError instead of waiting: room
            # for every concurrent task, so the baseline never fails for want of a connection.
            max_connections=RAW_CLUSTER_CONNECTIONS,
            **_like_lockyards(server_settings(config), RAW_CLIENT_NAME),
        )
        self._reset_state()

    async def prepare(self) -> None:
        await self._client.initialize()
        await super().prepare()

    def _script_keys(self, i: int) -> tuple[str, ...]:
        # A cluster routes EVALSHA by its key: one key, as every Lockyard script has.
        return (f"{self._prefix}{i % RAW_KEYS}",)

    async def _delete(self, keys: list[str]) -> None:
        # Keys of different slots cannot go in one DEL on a cluster.
        for key in keys:
            await self._client.delete(key)


# -- PostgreSQL ------------------------------------------------------------------------------
# The raw statements run on the very table Lockyard writes, in the benchmark's own schema, under
# a prefix of their own: same columns, generated `kind`, same indexes, and the same amount of
# data around them, so the ratio measures Lockyard's own work and not a smaller or cheaper table.
# $1 is the prefix, as in Lockyard's statements.
# Upsert: $2 key, $3 value, $4 ttl in ms; creates at version 1 or bumps the version.
UPSERT = """
INSERT INTO {s}.entries AS t (prefix, key, value, version, expires_at)
VALUES ($1, $2, $3, 1, now() + $4 * interval '1 millisecond')
ON CONFLICT (prefix, key) DO UPDATE
SET value = excluded.value, version = t.version + 1, expires_at = excluded.expires_at"""
# Conditional update (compare_and_swap's plainest form): $2 key, $3 value, $4 ttl in ms; writes a
# live row and returns its new version, or no row.
UPDATE = """
UPDATE {s}.entries SET value = $3, version = version + 1,
    expires_at = now() + $4 * interval '1 millisecond'
WHERE prefix = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())
RETURNING version"""
# $2 key; returns (value, version) of a live row, or no row.
SELECT = """
SELECT value, version FROM {s}.entries
WHERE prefix = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())"""
# The reads that return many rows, each the plainest statement over the index Lockyard's uses.
# $2/$3 the key range; 20 keys fall in it, the other raw rows outside.
RANGE_SELECT = """
SELECT key, value FROM {s}.entries
WHERE prefix = $1 AND key >= $2 AND key < $3 AND (expires_at IS NULL OR expires_at > now())"""
# $2 the kind of exactly those 20 keys (``kind`` is the generated column Lockyard indexes).
KIND_SELECT = """
SELECT key, value FROM {s}.entries
WHERE prefix = $1 AND kind = $2 AND (expires_at IS NULL OR expires_at > now())"""
# $2 the due time: 20 of the index rows are due by then. The lower bound is the predicate of the
# partial index Lockyard's due reads use (without it PostgreSQL cannot use that index).
DUE_SELECT = f"""
SELECT key FROM {{s}}.time_index
WHERE prefix = $1 AND index_name = 'timeout'
  AND at_ms >= {-MAX_INDEX_TIMESTAMP_MS} AND at_ms <= $2"""
RAW_CLEANUP = (
    "DELETE FROM {s}.entries WHERE prefix = $1",
    "DELETE FROM {s}.time_index WHERE prefix = $1",
)
INDEX_ROW = """
INSERT INTO {s}.time_index (prefix, index_name, key, at_ms) VALUES ($1, 'timeout', $2, $3)"""
#: The raw call paired with each many-row read.
MANY_ROW_CALLS = {
    "scan_keys": "range select",
    "scan_keys_by_kind": "kind select",
    "get_expired_timeouts": "due select",
}
#: Lockyard operations whose raw pair is the conditional update rather than the upsert.
UPDATE_OPS = frozenset({"compare_and_swap"})


async def _no_reset(connection: Any) -> None:
    """Pool ``reset`` hook, as Lockyard's pool has: asyncpg's default costs a round trip per
    release (``RESET ALL``, ``UNLISTEN *``...), which would double the baseline's cost."""


def _raw_key(i: int) -> str:
    # Shaped like a canonical key, so the generated `kind` column has the same work to do.
    return f"bench:raw:entry:k{i % RAW_KEYS}"


def quote_schema_name(schema: str) -> str:
    from lockyard.backends.postgres import quote_schema

    return quote_schema(schema)


class PostgresRaw(RawDriver):
    driver = "asyncpg"

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config
        #: Lockyard's schema (its connection has migrated it); the raw rows get their own prefix.
        self._schema = config.schema_name
        self._prefix = f"raw-{uuid.uuid4().hex[:10]}"
        self._pool: Any = None

    def call_for(self, op: str) -> str:
        if op in MANY_ROW_CALLS:
            return MANY_ROW_CALLS[op]
        if op in READ_OPS:
            return "select"
        return "update" if op in UPDATE_OPS else "upsert"

    async def prepare(self) -> None:
        import asyncpg

        config = self._config
        self._pool = await asyncpg.create_pool(
            host=config.host,
            port=config.port,
            user=config.user,
            password=config.password.get_secret_value() if config.password else None,
            database=config.database,
            ssl=config.sslmode,
            min_size=1,
            max_size=config.pool_size,
            reset=_no_reset,
        )
        schema = quote_schema_name(self._schema)
        upsert = UPSERT.format(s=schema)
        for i in range(RAW_KEYS):
            await self._pool.execute(upsert, self._prefix, _raw_key(i), "x" * 32, 600_000)
        # The many-row reads' rows: RAW_MATCHES in the range, of the kind and due; the others
        # beside them (a neighbouring kind, later key range, due later).
        index_row = INDEX_ROW.format(s=schema)
        for i in range(RAW_MATCHES + RAW_OTHERS):
            kind = "scan" if i < RAW_MATCHES else "scanother"
            key = f"bench:raw:{kind}:item-{i:03d}"
            await self._pool.execute(upsert, self._prefix, key, "x" * 32, 600_000)
            due = RAW_DUE_AT_MS - i if i < RAW_MATCHES else RAW_DUE_AT_MS + i
            await self._pool.execute(index_row, self._prefix, key, due)

    def op(self, call: str) -> Op:
        pool = self._pool
        schema = quote_schema_name(self._schema)
        statement = {
            "upsert": UPSERT,
            "update": UPDATE,
            "select": SELECT,
            "range select": RANGE_SELECT,
            "kind select": KIND_SELECT,
            "due select": DUE_SELECT,
        }[call].format(s=schema)
        many_row_args: tuple[object, ...] = {
            "range select": ("bench:raw:scan:item-", "bench:raw:scan:item."),
            "kind select": ("scan",),
            "due select": (RAW_DUE_AT_MS,),
        }.get(call, ())
        if many_row_args:

            async def read_many(i: int, task: int) -> object:
                return await pool.fetch(statement, self._prefix, *many_row_args)

            return read_many
        if call == "select":

            async def read(i: int, task: int) -> object:
                return await pool.fetchrow(statement, self._prefix, _raw_key(i))

            return read

        async def write(i: int, task: int) -> object:
            return await pool.fetchrow(statement, self._prefix, _raw_key(i), "x" * 32, 600_000)

        return write

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            schema = quote_schema_name(self._schema)
            for statement in RAW_CLEANUP:
                await self._pool.execute(statement.format(s=schema), self._prefix)
        finally:
            await self._pool.close()


# -- DynamoDB --------------------------------------------------------------------------------
class DynamoDBRaw(RawDriver):
    driver = "aioboto3"

    def __init__(self, config: DynamoDBConfig) -> None:
        self._config = config
        self._table = f"lockyard-bench-raw-{uuid.uuid4().hex[:8]}"
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def call_for(self, op: str) -> str:
        return "GetItem" if op in READ_OPS else "PutItem"

    async def prepare(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig

        config = self._config
        secret = config.secret_access_key.get_secret_value() if config.secret_access_key else None
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "dynamodb",
                region_name=config.region,
                endpoint_url=config.endpoint_url,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=secret,
                # As Lockyard's client: same pool, timeouts, and botocore retries off.
                config=AioConfig(
                    max_pool_connections=config.pool_size,
                    connect_timeout=config.operation_timeout,
                    read_timeout=config.operation_timeout,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
        )
        await self._client.create_table(
            TableName=self._table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        waiter = self._client.get_waiter("table_exists")
        await waiter.wait(TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        for i in range(RAW_KEYS):
            await self._put(i)

    async def _put(self, i: int) -> object:
        return await self._client.put_item(
            TableName=self._table,
            Item={"pk": {"S": f"k{i % RAW_KEYS}"}, "v": {"S": "x" * 32}, "ver": {"N": "1"}},
        )

    def op(self, call: str) -> Op:
        client, table = self._client, self._table

        async def put_item(i: int, task: int) -> object:
            return await self._put(i)

        async def get_item(i: int, task: int) -> object:
            return await client.get_item(
                TableName=table, Key={"pk": {"S": f"k{i % RAW_KEYS}"}}, ConsistentRead=True
            )

        return {"PutItem": put_item, "GetItem": get_item}[call]

    async def close(self) -> None:
        try:
            if self._client is not None:
                await self._client.delete_table(TableName=self._table)
        finally:
            await self._stack.aclose()


def raw_driver_for(config: BackendConfig) -> RawDriver | None:
    """The baseline for ``config``'s backend; ``None`` for memory (nothing beneath it)."""
    if isinstance(config, RedisConfig):
        return RedisRaw(config)
    if isinstance(config, RedisClusterConfig):
        return RedisClusterRaw(config)
    if isinstance(config, PostgresConfig):
        return PostgresRaw(config)
    if isinstance(config, DynamoDBConfig):
        return DynamoDBRaw(config)
    return None
