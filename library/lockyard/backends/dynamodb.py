"""The DynamoDB backend: one table, conditional writes, strongly consistent reads (aioboto3).

URL: ``dynamodb://[KEY_ID:SECRET@]TABLE?region=R&endpoint_url=URL&prefix=P&create_table=true``.
Credentials come from the standard AWS chain (environment, profile, web identity, container or
instance role) unless the URL or :class:`~lockyard.config.DynamoDBConfig` gives a key pair. One
aiobotocore client (one HTTP connection pool of ``pool_size``) serves every operation of a
connection and is closed by ``close()``.

Data layout (``P`` is the prefix; it cannot contain ``#``, so ``P#`` fences a store off)
-----------------------------------------------------------------------------------------
One table, hash key ``pk`` (S), on-demand billing, native TTL on ``expires_at``; the definition
and every expression are in :mod:`lockyard.backends.dynamodb_layout`.

===================  =====================================================================
item ``pk``          attributes
===================  =====================================================================
``P#d#<key>``        a data key: ``kp`` = ``P#d#<kind>``, ``k`` = the canonical key, the value
                     (``v`` S and/or ``n`` N, below), ``ver`` N, and with a TTL ``exp_ms`` N
                     (epoch ms) and ``expires_at`` N (epoch s, for native TTL)
``P#l#<name>``       a lock: ``fence`` N (last token handed out; kept forever, so tokens are
                     never reused); while held also ``own`` S, ``dl`` N (lease end, epoch ms),
                     ``kp`` = ``P#l`` and ``k`` = the name
``P#t#<key>``,       one entry of the timeout / chain-ready index: ``ip`` = ``P#t`` / ``P#c``,
``P#c#<key>``        ``ts`` N = the indexed millisecond timestamp
===================  =====================================================================

Global secondary indexes, both sparse (an item is in a GSI only if it has the GSI's keys):

- ``by_kind`` (``kp`` HASH, ``k`` RANGE; projects ``v n exp_ms own dl fence``): every data item
  and every held lock. ``scan_keys`` is a Query ``kp = P#d#<kind> AND begins_with(k, anchor +
  prefix)`` (``begins_with`` is a literal byte comparison: no wildcard exists, ``%``, ``_``, ``*``
  are ordinary), ``scan_keys_by_kind`` a Query ``kp = P#d#<kind>``, ``list_held`` a Query
  ``kp = P#l``. Neither ever reads another kind, prefix, lock or index entry, and none is a Scan.
  All keys of one kind share a partition key value; because the index has a range key, DynamoDB
  splits that item collection across partitions by ``k`` as it grows hot (no LSI prevents it).
- ``by_time`` (``ip`` HASH, ``ts`` RANGE; keys only): the two indexes. ``get_expired_timeouts``
  and ``get_ready_chains`` are a range Query ``ip = P#t AND ts <= now``: O(log N + M) and
  untouched by unrelated data. Re-indexing a key is one PutItem on its one index item: an atomic
  replace, so a key is in an index at most once, also under concurrent re-indexing.

Values: a counter, that is a value in the counter grammar every backend shares (the canonical
decimal of a signed 64-bit integer, :func:`lockyard.store.counter_value`), is stored as the
number ``n``, whose canonical decimal is the value again; any other value, other spellings of a
number (``" 7"``, ``"007"``, ``"-0"``, ``str(2**63)``) included, is the string ``v``. Every write
computes this client-side and removes the form it does not use, so one item always holds
exactly one logical value, which ``get``, scans and ``get_versioned`` read back exactly.
``increment`` is then server-side arithmetic on ``n``, and its condition refuses any item with a
``v``. (Items written by earlier versions may hold an integer spelt another way in ``v`` beside
its number in ``n``; ``v`` wins on reads, and ``increment`` refuses them like any other string.)

Cost of each operation (round trips; "1" is one conditional or plain request)
-----------------------------------------------------------------------------
- ``get``, ``get_versioned``, ``is_held``: 1 GetItem, ``ConsistentRead=True``.
- ``check_and_set``: 1 PutItem, condition ``attribute_not_exists(pk) OR exp_ms <= :now``: an
  expired item counts as absent, so of any number of racers, expired value or not, exactly one
  wins (DynamoDB serialises writes to one item).
- ``delete``: 1 DeleteItem returning ALL_OLD (also removes an expired item; reports whether the
  old item was live).
- ``compare_and_swap``: 1 PutItem, condition ``ver = :expected AND live``; on failure
  ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` returns the current value and version in the
  same response.
- ``set``: 1 UpdateItem (version ``if_not_exists(ver, 0) + 1``) when the key is missing or live.
  When the item exists but has expired the version must restart at 1, which an update
  expression cannot decide (it has no branches), so the condition fails and a second request,
  a PutItem conditional on ``absent or expired``, replaces the item. Each request is atomic on its
  own and re-checks its premise, so a concurrent writer makes one of them fail and the loop
  starts over; the expired path only exists until native TTL deletes the item.
- ``increment``: 1 UpdateItem ``n = if_not_exists(n, 0) + :d, ver = if_not_exists(ver, 0) + 1``
  conditional on ``missing, or live with n and no v, within bounds`` (``n <= INT64_MAX - d`` for
  ``d > 0``, ``n >= INT64_MIN - d`` for ``d < 0``), so an overflow changes nothing. On failure
  ALL_OLD says why, with no extra read: for a live item it is always an error, never a retry (a
  value that is not a counter, or the overflow, both ``SerializationError``), and an expired item
  takes the same second request as ``set`` (a conditional PutItem of ``n = d, ver = 1``).
- ``index_timeout``/``index_chain_ready``: 1 PutItem; ``remove_*``: 1 DeleteItem; ``get_*``:
  1 Query per 1 MB page.
- ``scan_keys``/``scan_keys_by_kind``: 1 Query per 1 MB page. GSIs are eventually consistent in
  DynamoDB: a scan may miss a write from the last moment (typically under a second), and
  ``list_held`` may briefly show a lock just released. ``get``/``get_versioned`` and every
  decision (all conditions are evaluated on the table) are strongly consistent.
- ``purge`` (administrative, never on a hot path): a consistent Scan filtered on ``begins_with(pk,
  P#)`` plus BatchWriteItem deletes: O(table size). Use a table per store where purges matter.

Throttling (``ProvisionedThroughputExceededException``, ``ThrottlingException``,
``RequestLimitExceeded``) is retried here with full-jitter exponential backoff (25 ms doubling,
capped at 1 s) while the operation timeout leaves room; a throttled request was not applied, so
this is safe for every operation. Botocore's own retries are off: its standard mode also re-sends
after 5xx answers and dropped connections, where the first attempt may have been applied, which
would make an ``increment`` count twice or a won ``check_and_set`` report a loss; and its backoff
starts at up to 1 s, which would hide an outage behind seconds of retries.

Time and expiry
---------------
Deadlines are absolute epoch milliseconds from the client's wall clock (``clock.wall()``), so
hosts must keep their clocks in sync (NTP or the Amazon Time Sync Service keep them within
milliseconds). A host whose clock runs ``s`` ahead treats deadlines as passed ``s`` early: it
sees keys expire early and can take a lock up to ``s`` before the holder's lease ends. Keep skew
well below the shortest lock TTL (a skew of a tenth of the TTL uses up a tenth of the safety
margin; renewal at ttl/3 leaves the rest). Reads, scans and every condition hide expired items
themselves, so expiry is exact to the millisecond; native TTL on ``expires_at`` (whole seconds,
rounded up) reclaims the storage in the background, typically within days. Lock items never get
``expires_at``: their fencing counter must outlive every lease.

Lock safety
-----------
A lock is taken, extended and released by conditional writes on its one item; the fencing
counter is bumped in the acquiring write, so tokens strictly increase per name and are never
reused. DynamoDB acknowledges a write once it is durable in several Availability Zones, so a
lock survives node and zone failures; mutual exclusion holds while client clocks agree to well
within the TTL. Global tables are not supported: their cross-region replication is asynchronous
and last-writer-wins, so two regions could both grant a lock. DynamoDB has no release signal:
waiters poll with jittered backoff capped at :attr:`DynamoDBLocks.poll_cap_s`, and are not
queued (``Guarantees.fifo_waiters`` is false): the first attempt after a release wins, so a
contended lock is not handed out in arrival order.

Failure behaviour
-----------------
Every driver error goes through :func:`translate`: connection refused, reset or closed, TLS and
connect timeouts are ``BackendConnectionError``; read timeouts ``OperationTimeoutError``;
throttling beyond the timeout, access denied, validation (an item over 400 KB, a key over the
1024-byte GSI range-key limit) and a vanished table are ``BackendError``; missing credentials are
``ConfigError``. An answer lost to a dropped connection is reported, never retried, so a caller
that sees ``BackendConnectionError`` from a write does not know whether it was applied. Nothing
else needs reconnecting: the client opens new HTTP connections once the endpoint answers again.
A table that disappears is never re-created behind the caller's back (that would restart every
fencing counter); with ``create_table=true`` it is created when a connection opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.loaders import Loader, create_loader

from lockyard.backends import dynamodb_layout as layout
from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import DynamoDBConfig
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    OperationTimeoutError,
    StateError,
)
from lockyard.guarantees import Guarantees
from lockyard.keys import kind_of
from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import ErrorTranslator, OperationRunner
from lockyard.store import (
    INT64_MAX,
    INT64_MIN,
    CasResult,
    StateStore,
    checked_sum,
    counter_value,
    parse_counter,
)

logger = logging.getLogger(__name__)

GUARANTEES = Guarantees(
    mutual_exclusion=(
        "conditional writes on one item with strongly consistent reads; holds while client "
        "clocks agree to well within the lock TTL"
    ),
    failover_safety=(
        "writes are acknowledged once durable across Availability Zones: a lock survives node "
        "and zone failures (global tables are not supported: asynchronous replication)"
    ),
    fencing="per-name counter bumped in the acquiring write, kept after release, never reused",
    ttl_precision="1 ms (judged on read and in conditions; native TTL reclaims storage later)",
    clock="the client's wall clock: keep hosts in sync, skew well below the shortest lock TTL",
    fifo_waiters=False,
)

#: How long opening a connection may wait for CreateTable, its GSIs and TTL to become active.
TABLE_SETUP_TIMEOUT_S: Final = 300.0
TABLE_POLL_INTERVAL_S: Final = 0.5

THROTTLING_CODES: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
THROTTLE_BASE_S: Final = 0.025
THROTTLE_CAP_S: Final = 1.0

#: Rounds of the two-request paths of ``set`` and ``increment`` before giving up; each extra
#: round needs another writer to have changed the item in between.
MAX_WRITE_ROUNDS: Final = 8

BATCH_WRITE_LIMIT: Final = 25

AttributeValue: TypeAlias = dict[str, Any]
Item: TypeAlias = dict[str, AttributeValue]
Response: TypeAlias = dict[str, Any]


def _s(text: str) -> AttributeValue:
    return {"S": text}


def _n(number: int) -> AttributeValue:
    return {"N": str(number)}


def _int(item: Item, name: str) -> int:
    return int(item[name]["N"])


def error_code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def is_throttling(exc: BaseException) -> bool:
    """Whether DynamoDB refused ``exc``'s request unprocessed because of throughput limits."""
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_CODES


def throttle_delays(budget_s: float, rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Full-jitter exponential pauses (25 ms doubling, 1 s cap) that together fit ``budget_s``."""
    spent, ceiling = 0.0, THROTTLE_BASE_S
    while True:
        pause = rand() * ceiling
        if spent + pause >= budget_s:
            return
        spent += pause
        yield pause
        ceiling = min(ceiling * 2, THROTTLE_CAP_S)


def value_form(value: str) -> tuple[str, Item]:
    """Which attribute holds ``value`` (``"n"`` for a counter, else ``"v"``) and its content."""
    number = counter_value(value)
    if number is None:
        return "v", {layout.VALUE: _s(value)}
    return "n", {layout.NUMBER: _n(number)}


def refused_increment(old: Item, key: str, delta: int) -> StateError:
    """Why ``INCREMENTABLE`` was false for the live item ``old`` (its state at that moment).

    Always an error, never a reason to retry: the condition refused this very item, so another
    round could only fail the same way. (Deciding here by a grammar other than the condition's
    once made increments of ``str(2**63)`` loop until "kept racing concurrent writers".)
    """
    try:
        checked_sum(parse_counter(value_of(old), key), delta, key)
    except StateError as exc:
        return exc
    # A counter's spelling kept as a string: lockyard stores counters as n only.
    return BackendError(
        f"dynamodb: item {old.get(layout.PK)} keeps the counter {value_of(old)!r} as a string: "
        "it was not written by lockyard"
    )


def value_of(item: Item) -> str:
    """The logical value of a data item: ``v`` when present (exact spelling), else ``n``."""
    if layout.VALUE in item:
        text: str = item[layout.VALUE]["S"]
        return text
    if layout.NUMBER in item:
        return str(_int(item, layout.NUMBER))
    raise BackendError(f"item {item.get(layout.PK)} has no value: it was not written by lockyard")


def is_live(item: Item, now_ms: int) -> bool:
    return layout.EXPIRES_MS not in item or _int(item, layout.EXPIRES_MS) > now_ms


def make_translate(config: DynamoDBConfig) -> ErrorTranslator:
    """The one place where botocore/aiobotocore errors become Lockyard errors (by class/code)."""
    where = config.endpoint_url or f"DynamoDB in {config.region}"
    table = config.table

    def translate(exc: BaseException) -> StateError | None:
        if isinstance(exc, TimeoutError):
            return None  # the operation timeout itself: the runner reports it (an OSError too)
        if isinstance(exc, ClientError):
            code = error_code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code in THROTTLING_CODES:
                return BackendError(
                    f"dynamodb: table {table!r} is still throttled ({code}) after retrying for "
                    "the operation timeout: raise its capacity or use on-demand billing"
                )
            if code == "ResourceNotFoundException":
                return BackendError(
                    f"dynamodb: table {table!r} (or an index of it) does not exist at {where}: "
                    f"{message}"
                )
            if code in {"RequestTimeout", "RequestTimeoutException"}:
                return OperationTimeoutError(f"dynamodb: {code} from {where}")
            return BackendError(f"dynamodb refused the request on {table!r}: {code}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError):
            return ConfigError(
                f"dynamodb: {exc}: configure the AWS credential chain, or give a key pair "
                "(dynamodb://KEY_ID:SECRET@TABLE or access_key_id/secret_access_key)"
            )
        if isinstance(exc, ReadTimeoutError):
            return OperationTimeoutError(f"dynamodb: no answer from {where}: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            # Refused, reset, closed, TLS and connect timeouts: the endpoint cannot be reached.
            return BackendConnectionError(f"dynamodb: cannot reach {where}: {exc}")
        if isinstance(exc, CredentialRetrievalError):
            return BackendError(f"dynamodb: the AWS credential provider failed: {exc}")
        if isinstance(exc, BotoCoreError):
            return BackendError(f"dynamodb: {exc}")
        if isinstance(exc, OSError):
            return BackendConnectionError(f"dynamodb: cannot reach {where}: {exc}")
        return None

    return translate


@dataclass(frozen=True, slots=True)
class ConditionFailed:
    """A conditional write whose condition was false; ``old`` is the item it was checked on."""

    old: Item | None


class _Table:
    """The client and table shared by the store and the locks: calls, retries, time."""

    def __init__(
        self, client: Any, config: DynamoDBConfig, clock: Clock, rand: Callable[[], float]
    ) -> None:
        self.client = client
        self.name = config.table
        self.prefix = config.prefix
        self.budget_s = config.operation_timeout
        self.clock = clock
        self._rand = rand

    def now_ms(self) -> int:
        return int(self.clock.wall() * 1000)

    def pk(self, tag: str, name: str) -> Item:
        return {layout.PK: _s(f"{self.prefix}#{tag}#{name}")}

    async def call(self, method: Callable[..., Awaitable[Response]], **params: Any) -> Response:
        """One request on the table (``TableName`` is added)."""
        return await self.send(method, TableName=self.name, **params)

    async def send(self, method: Callable[..., Awaitable[Response]], **params: Any) -> Response:
        """One request; re-sent only after throttling (which DynamoDB did not apply)."""
        delays = throttle_delays(self.budget_s, self._rand)
        while True:
            try:
                return await method(**params)
            except ClientError as exc:
                pause = next(delays, None) if is_throttling(exc) else None
                if pause is None:
                    raise
            await self.clock.sleep(pause)

    async def write(
        self, method: Callable[..., Awaitable[Response]], **params: Any
    ) -> Response | ConditionFailed:
        """A conditional write: its response, or :class:`ConditionFailed` with the old item."""
        try:
            return await self.call(method, **params)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old: Item | None = exc.response.get("Item") or None
            return ConditionFailed(old)

    async def query(self, **params: Any) -> list[Item]:
        """Every item of a Query, page by page (one request per 1 MB)."""
        items: list[Item] = []
        while True:
            response = await self.call(self.client.query, **params)
            items.extend(response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            params["ExclusiveStartKey"] = last

    def deadline_values(self, ttl_ms: int | None, now_ms: int) -> Item:
        if ttl_ms is None:
            return {}
        deadline = now_ms + ttl_ms
        return {":exp": _n(deadline), ":expires_at": _n(math.ceil(deadline / 1000))}


class DynamoDBStateStore(StateStore):
    def __init__(self, runner: OperationRunner, table: _Table) -> None:
        super().__init__(runner)
        self._t = table
        self._client = table.client

    def _key(self, key: str) -> Item:
        return self._t.pk(layout.DATA_TAG, key)

    def _kind_part(self, kind: str) -> AttributeValue:
        return _s(f"{self._t.prefix}#{layout.DATA_TAG}#{kind}")

    def _item(self, key: str, value: str, version: int, ttl_ms: int | None, now_ms: int) -> Item:
        """A whole data item, for PutItem."""
        item: Item = {
            **self._key(key),
            layout.KIND_PART: self._kind_part(kind_of(key)),
            layout.SORT_KEY: _s(key),
            layout.VERSION: _n(version),
            **value_form(value)[1],
        }
        if ttl_ms is not None:
            deadline = now_ms + ttl_ms
            item[layout.EXPIRES_MS] = _n(deadline)
            item[layout.TTL_ATTRIBUTE] = _n(math.ceil(deadline / 1000))
        return item

    async def _replace_expired(
        self, key: str, value: str, ttl_ms: int | None
    ) -> Response | ConditionFailed:
        """Second request of set/increment: put version 1 if the item is (still) absent/expired."""
        now = self._t.now_ms()
        return await self._t.write(
            self._client.put_item,
            Item=self._item(key, value, 1, ttl_ms, now),
            ConditionExpression=layout.ABSENT_OR_EXPIRED,
            ExpressionAttributeValues={":now": _n(now)},
        )

    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        result = await self._replace_expired(key, value, ttl_ms)
        return not isinstance(result, ConditionFailed)

    async def _read(self, key: str) -> Item | None:
        response = await self._t.call(
            self._client.get_item,
            Key=self._key(key),
            ConsistentRead=True,
            ProjectionExpression=layout.DATA_FIELDS,
        )
        item: Item | None = response.get("Item")
        return item if item and is_live(item, self._t.now_ms()) else None

    async def _get(self, key: str) -> str | None:
        item = await self._read(key)
        return None if item is None else value_of(item)

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        item = await self._read(key)
        return None if item is None else (value_of(item), _int(item, layout.VERSION))

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        form, attributes = value_form(value)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            values: Item = {f":{name}": content for name, content in attributes.items()} | {
                ":zero": _n(0),
                ":one": _n(1),
                ":kp": self._kind_part(kind_of(key)),
                ":k": _s(key),
                ":now": _n(now),
                **self._t.deadline_values(ttl_ms, now),
            }
            result = await self._t.write(
                self._client.update_item,
                Key=self._key(key),
                UpdateExpression=layout.SET_UPDATES[form, ttl_ms is not None],
                ConditionExpression=layout.MISSING_OR_LIVE,
                ExpressionAttributeValues=values,
            )
            if not isinstance(result, ConditionFailed):
                return
            # The item exists but has expired: the version restarts at 1.
            if not isinstance(await self._replace_expired(key, value, ttl_ms), ConditionFailed):
                return
        raise BackendError(f"dynamodb: set on {key!r} kept racing concurrent writers; retry")

    async def _delete(self, key: str) -> bool:
        response = await self._t.call(
            self._client.delete_item, Key=self._key(key), ReturnValues="ALL_OLD"
        )
        old: Item = response.get("Attributes") or {}
        return bool(old) and is_live(old, self._t.now_ms())

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        sign = (delta > 0) - (delta < 0)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._t.now_ms()
            values: Item = {
                ":zero": _n(0),
                ":one": _n(1),
                ":d": _n(delta),
                ":kp": self._kind_part(kind_of(key)),
                ":k": _s(key),
                ":now": _n(now),
                **self._t.deadline_values(ttl_ms, now),
            }
            if sign:
                values[":limit"] = _n(INT64_MAX - delta if sign > 0 else INT64_MIN - delta)
            result = await self._t.write(
                self._client.update_item,
                Key=self._key(key),
                UpdateExpression=layout.INCREMENT_UPDATES[ttl_ms is not None],
                ConditionExpression=layout.INCREMENTABLE[sign],
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            if not isinstance(result, ConditionFailed):
                return _int(result["Attributes"], layout.NUMBER)
            old = result.old
            if old is not None and is_live(old, now):
                raise refused_increment(old, key, delta)
            # Expired (native TTL has not deleted it yet): start again from 0 at version 1.
            if not isinstance(
                await self._replace_expired(key, str(delta), ttl_ms), ConditionFailed
            ):
                return delta
        raise BackendError(f"dynamodb: increment on {key!r} kept racing concurrent writers; retry")

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        now = self._t.now_ms()
        result = await self._t.write(
            self._client.put_item,
            Item=self._item(key, new_value, expected_version + 1, ttl_ms, now),
            ConditionExpression=layout.VERSION_MATCHES_AND_LIVE,
            ExpressionAttributeValues={":expected": _n(expected_version), ":now": _n(now)},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not isinstance(result, ConditionFailed):
            return CasResult(ok=True, current_value=new_value, current_version=expected_version + 1)
        old = result.old
        if old is None or not is_live(old, now):
            return CasResult(ok=False, current_value=None, current_version=0)
        return CasResult(
            ok=False, current_value=value_of(old), current_version=_int(old, layout.VERSION)
        )

    async def _scan(self, condition: str, values: Item) -> list[tuple[str, str]]:
        items = await self._t.query(
            IndexName=layout.BY_KIND,
            KeyConditionExpression=condition,
            FilterExpression=layout.LIVE_FILTER,
            ProjectionExpression=layout.SCAN_FIELDS,
            ExpressionAttributeValues={**values, ":now": _n(self._t.now_ms())},
        )
        return [(item[layout.SORT_KEY]["S"], value_of(item)) for item in items]

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        values = {":kp": self._kind_part(kind), ":prefix": _s(key_prefix)}
        return await self._scan(layout.KEYS_WITH_PREFIX, values)

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        return await self._scan(layout.KEYS_OF_PART, {":kp": self._kind_part(kind)})

    def _index_part(self, index: str) -> AttributeValue:
        return _s(f"{self._t.prefix}#{layout.INDEX_TAGS[index]}")

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        item = {
            **self._t.pk(layout.INDEX_TAGS[index], key),
            layout.INDEX_PART: self._index_part(index),
            layout.INDEX_AT: _n(at_ms),
        }
        await self._t.call(self._client.put_item, Item=item)

    async def _index_remove(self, index: str, key: str) -> None:
        await self._t.call(self._client.delete_item, Key=self._t.pk(layout.INDEX_TAGS[index], key))

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        items = await self._t.query(
            IndexName=layout.BY_TIME,
            KeyConditionExpression=layout.DUE,
            ProjectionExpression=layout.PK,
            ExpressionAttributeValues={":ip": self._index_part(index), ":now": _n(now_ms)},
        )
        start = len(f"{self._t.prefix}#{layout.INDEX_TAGS[index]}#")
        return [item[layout.PK]["S"][start:] for item in items]

    async def _purge(self) -> int:
        store = f"{self._t.prefix}#"
        params: dict[str, Any] = {
            "FilterExpression": layout.OF_STORE,
            "ProjectionExpression": layout.PK,
            "ExpressionAttributeValues": {":store": _s(store)},
            "ConsistentRead": True,
        }
        keys: list[str] = []
        while True:
            response = await self._t.call(self._client.scan, **params)
            keys.extend(item[layout.PK]["S"] for item in response.get("Items", []))
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            await self._delete_batch(keys[start : start + BATCH_WRITE_LIMIT])
        data = f"{store}{layout.DATA_TAG}#"
        return sum(1 for pk in keys if pk.startswith(data))

    async def _delete_batch(self, keys: list[str]) -> None:
        requests = [{"DeleteRequest": {"Key": {layout.PK: _s(pk)}}} for pk in keys]
        delays = throttle_delays(self._t.budget_s)
        while requests:
            response = await self._t.send(
                self._client.batch_write_item, RequestItems={self._t.name: requests}
            )
            requests = response.get("UnprocessedItems", {}).get(self._t.name, [])
            if requests:
                pause = next(delays, None)
                if pause is None:
                    raise BackendError(
                        f"dynamodb: purge of {self._t.name!r} is throttled; retry later"
                    )
                await self._t.clock.sleep(pause)


class DynamoDBLocks(DistributedLock):
    #: No release signal exists in DynamoDB: waiters poll, at least this often once backed off.
    poll_cap_s = 0.05

    def __init__(self, runner: OperationRunner, table: _Table) -> None:
        super().__init__(runner, table.clock)
        self._t = table
        self._client = table.client

    def _key(self, name: str) -> Item:
        return self._t.pk(layout.LOCK_TAG, name)

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        # No queue (wait_ms is ignored): without a release signal there is nothing to hand the
        # lock over with, so waiters poll and the first attempt after a release wins.
        now = self._t.now_ms()
        result = await self._t.write(
            self._client.update_item,
            Key=self._key(name),
            UpdateExpression=layout.ACQUIRE,
            ConditionExpression=layout.LOCK_FREE,
            ExpressionAttributeValues={
                ":now": _n(now),
                ":own": _s(owner),
                ":dl": _n(now + ttl_ms),
                ":zero": _n(0),
                ":one": _n(1),
                ":lock_kp": _s(f"{self._t.prefix}#{layout.LOCK_TAG}"),
                ":name": _s(name),
            },
            ReturnValues="UPDATED_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not isinstance(result, ConditionFailed):
            return AcquireAttempt(_int(result["Attributes"], layout.FENCING))
        old = result.old
        if old is None or layout.DEADLINE not in old:
            return AcquireAttempt(None)
        return AcquireAttempt(None, retry_after_ms=max(0, _int(old, layout.DEADLINE) - now))

    async def _held_write(self, name: str, update: str, values: Item, condition: str) -> bool:
        result = await self._t.write(
            self._client.update_item,
            Key=self._key(name),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues={**values, ":now": _n(self._t.now_ms())},
        )
        return not isinstance(result, ConditionFailed)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        values = {":own": _s(owner), ":dl": _n(self._t.now_ms() + ttl_ms)}
        return await self._held_write(name, layout.EXTEND, values, layout.HELD_BY)

    async def _release(self, name: str, owner: str) -> bool:
        return await self._held_write(name, layout.RELEASE, {":own": _s(owner)}, layout.HELD_BY)

    async def _break(self, name: str) -> bool:
        return await self._held_write(name, layout.RELEASE, {}, layout.HELD_BY_ANYONE)

    async def _is_held(self, name: str, owner: str) -> bool:
        response = await self._t.call(
            self._client.get_item,
            Key=self._key(name),
            ConsistentRead=True,
            ProjectionExpression=layout.LOCK_FIELDS,
        )
        item: Item = response.get("Item") or {}
        return (
            item.get(layout.OWNER, {}).get("S") == owner
            and layout.DEADLINE in item
            and _int(item, layout.DEADLINE) > self._t.now_ms()
        )

    async def _list_held(self) -> list[LockInfo]:
        now = self._t.now_ms()
        items = await self._t.query(
            IndexName=layout.BY_KIND,
            KeyConditionExpression=layout.KEYS_OF_PART,
            FilterExpression=layout.HELD_FILTER,
            ProjectionExpression=layout.HELD_FIELDS,
            ExpressionAttributeValues={
                ":kp": _s(f"{self._t.prefix}#{layout.LOCK_TAG}"),
                ":now": _n(now),
            },
        )
        return [
            LockInfo(
                name=item[layout.SORT_KEY]["S"],
                owner=item[layout.OWNER]["S"],
                fencing_token=_int(item, layout.FENCING),
                expires_in_ms=_int(item, layout.DEADLINE) - now,
            )
            for item in items
        ]


class DynamoDBBackend:
    """One aiobotocore client shared by the store and the locks; ``close()`` closes it."""

    name = "dynamodb"
    guarantees = GUARANTEES

    def __init__(
        self,
        config: DynamoDBConfig,
        client: Any,
        stack: contextlib.AsyncExitStack,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.client = client
        self._stack = stack
        self._run = OperationRunner(self.name, config.operation_timeout, make_translate(config))
        self._table = _Table(client, config, clock, random.random)
        self.store = DynamoDBStateStore(self._run, self._table)
        self.locks = DynamoDBLocks(self._run, self._table)

    async def ping(self) -> float:
        """One GetItem of a key that never exists (needs only the data-plane permission)."""
        started = time.perf_counter()
        probe = self._table.pk("ping", "")
        await self._run("ping", self._table.call(self.client.get_item, Key=probe))
        return time.perf_counter() - started

    async def server_version(self) -> str:
        api = self.client.meta.service_model.api_version
        return f"DynamoDB API {api} at {self.client.meta.endpoint_url}, table {self.config.table}"

    async def close(self) -> None:
        await self._stack.aclose()


def client_config(config: DynamoDBConfig) -> AioConfig:
    """Pool size, timeouts tied to the operation timeout, and botocore retries off (see above)."""
    return AioConfig(
        region_name=config.region,
        max_pool_connections=config.pool_size,
        connect_timeout=config.operation_timeout,
        read_timeout=config.operation_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
    )


@functools.cache
def _data_loader() -> Loader:
    """One botocore data loader per process: parsing botocore's JSON models is most of the cost
    of a new client (about 0.3 s), and the models never change while the process runs."""
    return create_loader()


def _session(config: DynamoDBConfig) -> aioboto3.Session:
    botocore_session = get_session()
    botocore_session.register_component("data_loader", _data_loader())
    return aioboto3.Session(
        botocore_session=botocore_session, region_name=config.region, **_credentials(config)
    )


def _credentials(config: DynamoDBConfig) -> dict[str, str]:
    key_id, secret = config.access_key_id, config.secret_access_key
    if key_id is None and secret is None:
        return {}
    if key_id is None or secret is None:
        raise ConfigError(
            "dynamodb: give both access_key_id and secret_access_key "
            "(dynamodb://KEY_ID:SECRET@TABLE), or neither to use the AWS credential chain"
        )
    return {"aws_access_key_id": key_id, "aws_secret_access_key": secret.get_secret_value()}


async def open_backend(config: DynamoDBConfig) -> DynamoDBBackend:
    """Open one client, check (or with ``create_table`` create) the table, return the backend."""
    session = _session(config)
    stack = contextlib.AsyncExitStack()
    try:
        try:
            client = await stack.enter_async_context(
                session.client(
                    "dynamodb", endpoint_url=config.endpoint_url, config=client_config(config)
                )
            )
        except ValueError as exc:
            # botocore's own checks (InvalidRegionError is a ValueError too) for anything the
            # config patterns let through: still the caller's settings, never a backend fault.
            raise ConfigError(
                f"dynamodb: botocore refused region {config.region!r} / endpoint_url "
                f"{config.endpoint_url!r}: {exc}"
            ) from None
        timeout = TABLE_SETUP_TIMEOUT_S if config.create_table else config.operation_timeout
        setup = OperationRunner("dynamodb", timeout, make_translate(config))
        await setup("open", prepare_table(client, config))
    except BaseException:
        await stack.aclose()
        raise
    return DynamoDBBackend(config, client, stack)


async def prepare_table(client: Any, config: DynamoDBConfig) -> None:
    """Check the table's layout; with ``create_table`` create it and its TTL first if missing.

    Idempotent and safe to run from many processes at once: a concurrent CreateTable shows up as
    ``ResourceInUseException`` and a concurrent TTL change as a ``ValidationException``, and both
    are followed by waiting for the state the winner produced.
    """
    table = config.table
    try:
        description = await _describe(client, table)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        if not config.create_table:
            where = config.endpoint_url or f"region {config.region}"
            raise ConfigError(
                f"DynamoDB table {table!r} does not exist ({where}): connect once with "
                f"create_table=true (dynamodb://{table}?create_table=true), or create it with "
                "the definition in lockyard.backends.dynamodb_layout.table_definition"
            ) from None
        try:
            await client.create_table(**layout.table_definition(table))
            logger.info("created DynamoDB table %s", table)
        except ClientError as exc:
            # Another process is creating it at the same moment: wait for its table instead.
            if error_code(exc) != "ResourceInUseException":
                raise
        description = await _describe(client, table, wait_missing=True)
    while not _active(description):
        await asyncio.sleep(TABLE_POLL_INTERVAL_S)
        description = await _describe(client, table, wait_missing=True)
    check_layout(description)
    if config.create_table:
        await _ensure_ttl(client, table)


async def _describe(client: Any, table: str, wait_missing: bool = False) -> dict[str, Any]:
    while True:
        try:
            response = await client.describe_table(TableName=table)
        except ClientError as exc:
            # Right after CreateTable, DescribeTable may not see the table yet.
            if not wait_missing or error_code(exc) != "ResourceNotFoundException":
                raise
            await asyncio.sleep(TABLE_POLL_INTERVAL_S)
            continue
        description: dict[str, Any] = response["Table"]
        return description


def _active(description: dict[str, Any]) -> bool:
    indexes = description.get("GlobalSecondaryIndexes", [])
    return description.get("TableStatus") == "ACTIVE" and all(
        index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
    )


def check_layout(description: dict[str, Any]) -> None:
    """``ConfigError`` naming what is missing when the table was not made for this backend."""
    table = description.get("TableName", "?")
    keys = [(k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])]
    if keys != [(layout.PK, "HASH")]:
        raise ConfigError(
            f"DynamoDB table {table!r} has the key schema {keys}; lockyard needs a table whose "
            f"only key is the hash key {layout.PK!r} (S): use another table name"
        )
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    for name, hash_key, range_key in layout.REQUIRED_INDEXES:
        index = indexes.get(name)
        found = [(k["AttributeName"], k["KeyType"]) for k in (index or {}).get("KeySchema", [])]
        if found != [(hash_key, "HASH"), (range_key, "RANGE")]:
            raise ConfigError(
                f"DynamoDB table {table!r} lacks the global secondary index {name!r} "
                f"({hash_key} HASH, {range_key} RANGE): it was not created by lockyard; see "
                "lockyard.backends.dynamodb_layout.table_definition"
            )
    projection = indexes[layout.BY_KIND].get("Projection", {})
    if projection.get("ProjectionType") != "ALL":
        missing = set(layout.BY_KIND_PROJECTION) - set(projection.get("NonKeyAttributes", []))
        if missing:
            raise ConfigError(
                f"DynamoDB table {table!r}: index {layout.BY_KIND!r} does not project "
                f"{sorted(missing)}; see lockyard.backends.dynamodb_layout.table_definition"
            )


async def _ensure_ttl(client: Any, table: str) -> None:
    for _ in range(2):
        response = await client.describe_time_to_live(TableName=table)
        description = response.get("TimeToLiveDescription", {})
        status = description.get("TimeToLiveStatus", "DISABLED")
        if status in {"ENABLED", "ENABLING"}:
            if description.get("AttributeName") != layout.TTL_ATTRIBUTE:
                raise ConfigError(
                    f"DynamoDB table {table!r} has native TTL on "
                    f"{description.get('AttributeName')!r}; lockyard needs it on "
                    f"{layout.TTL_ATTRIBUTE!r}"
                )
            return
        if status == "DISABLING":
            break
        try:
            await client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": layout.TTL_ATTRIBUTE},
            )
            return
        except ClientError as exc:
            # Another process enabled it first (or the table is still settling): look again.
            if error_code(exc) != "ValidationException":
                raise
    logger.warning(
        "DynamoDB table %s: native TTL on %s could not be enabled; expired items stay hidden "
        "but are not reclaimed until it is",
        table,
        layout.TTL_ATTRIBUTE,
    )
