"""What the DynamoDB backend sends and stores: one request per operation, Queries never Scans,
one item per key in the documented layout, exactly one value form per item."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import lockyard
from lockyard import SerializationError
from lockyard.backends.dynamodb import GUARANTEES, DynamoDBBackend

pytestmark = pytest.mark.dynamodb

SHORT_TTL_S = 0.2
EXPIRY_WAIT_S = 0.35


async def raw_item(backend: DynamoDBBackend, pk: str) -> dict[str, Any]:
    response = await backend.client.get_item(
        TableName=backend.config.table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    item: dict[str, Any] = response.get("Item", {})
    return item


def data_pk(backend: DynamoDBBackend, key: str) -> str:
    return f"{backend.config.prefix}#d#{key}"


# -- one request per operation ---------------------------------------------------------------
async def test_store_operations_are_one_request_each(ly: lockyard.Connection, calls: Any) -> None:
    store, k = ly.store, "ns:acme:state:one"
    calls.take()
    assert await store.check_and_set(k, "a")
    assert not await store.check_and_set(k, "b")
    assert calls.take() == ["PutItem", "PutItem"]
    await store.get(k)
    await store.get_versioned(k)
    assert calls.take() == ["GetItem", "GetItem"]
    await store.set(k, "c")
    await store.set("ns:acme:state:fresh", "d")
    assert calls.take() == ["UpdateItem", "UpdateItem"]
    assert (await store.compare_and_swap(k, 2, "e")).ok
    assert not (await store.compare_and_swap(k, 2, "f")).ok
    assert not (await store.compare_and_swap("ns:acme:state:none", 0, "g")).ok
    assert calls.take() == ["PutItem"] * 3
    assert await store.delete(k)
    assert not await store.delete(k)
    assert calls.take() == ["DeleteItem", "DeleteItem"]


async def test_increment_is_one_request_on_missing_and_live_keys(
    ly: lockyard.Connection, calls: Any
) -> None:
    k = "ns:acme:counter:c"
    calls.take()
    assert await ly.store.increment(k, 2) == 2
    assert await ly.store.increment(k, 3, ttl=60) == 5
    await ly.store.set(k, "abc")
    calls.take()
    with pytest.raises(SerializationError):
        await ly.store.increment(k, 1)
    assert calls.take() == ["UpdateItem"]
    await ly.store.set(k, str(2**63 - 1))
    calls.take()
    with pytest.raises(SerializationError):
        await ly.store.increment(k, 1)
    assert calls.take() == ["UpdateItem"]


async def test_an_expired_item_costs_set_and_increment_a_second_request(
    ly: lockyard.Connection, calls: Any
) -> None:
    """The only two-request paths: the version must restart, and no update expression can
    branch on the deadline. Native TTL deletes such items eventually, ending the extra cost."""
    k = "ns:acme:counter:expiring"
    await ly.store.set(k, "40", ttl=SHORT_TTL_S)
    await asyncio.sleep(EXPIRY_WAIT_S)
    calls.take()
    assert await ly.store.increment(k, 2) == 2
    assert calls.take() == ["UpdateItem", "PutItem"]
    assert await ly.store.get_versioned(k) == ("2", 1)
    await ly.store.set(k, "x", ttl=SHORT_TTL_S)
    await asyncio.sleep(EXPIRY_WAIT_S)
    calls.take()
    await ly.store.set(k, "y")
    assert calls.take() == ["UpdateItem", "PutItem"]
    assert await ly.store.get_versioned(k) == ("y", 1)


async def test_scans_and_indexes_are_queries_never_scans(
    ly: lockyard.Connection, calls: Any
) -> None:
    for i in range(5):
        await ly.store.set(f"ns:acme:group:g{i}", str(i))
        await ly.store.index_timeout(f"ns:acme:group:g{i}", i)
    calls.take()
    assert len(await ly.store.scan_keys("ns", "acme", "group", prefix="g")) == 5
    assert len(await ly.store.scan_keys_by_kind("group")) == 5
    assert len(await ly.store.get_expired_timeouts(10)) == 5
    assert len(await ly.store.get_ready_chains(10)) == 0
    await ly.locks.list_held()
    assert calls.take() == ["Query"] * 5
    await ly.store.remove_timeout_index("ns:acme:group:g0")
    await ly.store.index_chain_ready("ns:acme:group:g0", 1)
    assert calls.take() == ["DeleteItem", "PutItem"]


async def test_lock_operations_are_one_request_each(ly: lockyard.Connection, calls: Any) -> None:
    calls.take()
    guard = await ly.locks.try_acquire("job", 5)
    assert guard is not None
    assert await ly.locks.try_acquire("job", 5) is None
    await guard.extend(5)
    assert await guard.is_held()
    await guard.release()
    assert calls.take() == ["UpdateItem", "UpdateItem", "UpdateItem", "GetItem", "UpdateItem"]
    await ly.locks.try_acquire("job", 5)
    calls.take()
    assert await ly.locks.break_lock("job")
    assert calls.take() == ["UpdateItem"]
    await ly.ping()
    assert calls.take() == ["GetItem"]


# -- the stored layout -----------------------------------------------------------------------
async def test_a_data_item_has_the_documented_attributes(
    ly: lockyard.Connection, backend: DynamoDBBackend
) -> None:
    k = "ns:acme:event_state:ns:t:act-1"
    await ly.store.set(k, "hello", ttl=90)
    item = await raw_item(backend, data_pk(backend, k))
    prefix = backend.config.prefix
    assert item["kp"] == {"S": f"{prefix}#d#event_state"}
    assert item["k"] == {"S": k}
    assert item["v"] == {"S": "hello"}
    assert item["ver"] == {"N": "1"}
    assert "n" not in item
    assert int(item["expires_at"]["N"]) == math.ceil(int(item["exp_ms"]["N"]) / 1000)
    await ly.store.set(k, "bye")
    item = await raw_item(backend, data_pk(backend, k))
    assert "exp_ms" not in item
    assert "expires_at" not in item
    assert item["ver"] == {"N": "2"}


@pytest.mark.parametrize(
    ("value", "attributes"),
    [
        ("12", {"n": "12"}),
        ("-7", {"n": "-7"}),
        ("0", {"n": "0"}),
        (str(2**63 - 1), {"n": str(2**63 - 1)}),
        (str(-(2**63)), {"n": str(-(2**63))}),
        (" 7", {"v": " 7"}),
        ("007", {"v": "007"}),
        ("+3", {"v": "+3"}),
        ("-0", {"v": "-0"}),
        ("\u0663", {"v": "\u0663"}),
        (str(2**63), {"v": str(2**63)}),
        (str(2**64), {"v": str(2**64)}),
        ("1.5", {"v": "1.5"}),
        ("", {"v": ""}),
    ],
)
async def test_each_value_has_exactly_one_logical_form(
    ly: lockyard.Connection, backend: DynamoDBBackend, value: str, attributes: dict[str, str]
) -> None:
    k = "ns:acme:counter:forms"
    await ly.store.set(k, "a string first")
    await ly.store.set(k, value)
    item = await raw_item(backend, data_pk(backend, k))
    stored = {name: next(iter(item[name].values())) for name in ("v", "n") if name in item}
    assert stored == attributes
    assert await ly.store.get(k) == value
    assert await ly.store.scan_keys("ns", "acme", "counter") == [(k, value)]


@pytest.mark.parametrize("value", [" 7", "007", "+7", "-0", "1_000", str(2**63), str(-(2**63) - 1)])
async def test_increment_refuses_what_is_not_a_counter_in_one_request(
    ly: lockyard.Connection, backend: DynamoDBBackend, calls: Any, value: str
) -> None:
    """The condition refuses any item with a v, and the refusal is final: no second round (a
    liberal client-side re-check once looped on ``str(2**63)`` until "kept racing")."""
    k = "ns:acme:counter:spelling"
    await ly.store.set(k, value)
    calls.take()
    for delta in (-1, 0, 1):
        with pytest.raises(SerializationError, match="not a counter"):
            await ly.store.increment(k, delta)
    assert calls.take() == ["UpdateItem"] * 3
    assert await ly.store.get_versioned(k) == (value, 1)


async def test_increment_refuses_an_integer_kept_in_both_forms(
    ly: lockyard.Connection, backend: DynamoDBBackend, calls: Any
) -> None:
    """Earlier versions stored " 7" as v = " 7" beside n = 7; such items read as " 7", which is
    not a counter, so increment refuses them in one request even though n is a number."""
    k = "ns:acme:counter:legacy"
    await ly.store.set(k, "7")
    await backend.client.update_item(
        TableName=backend.config.table,
        Key={"pk": {"S": data_pk(backend, k)}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": " 7"}},
    )
    assert await ly.store.get(k) == " 7"
    calls.take()
    with pytest.raises(SerializationError, match="not a counter"):
        await ly.store.increment(k, 1)
    assert calls.take() == ["UpdateItem"]
    assert await ly.store.get_versioned(k) == (" 7", 1)


async def test_negative_overflow_is_refused_atomically(ly: lockyard.Connection) -> None:
    k = "ns:acme:counter:low"
    assert await ly.store.increment(k, -(2**63) + 1) == -(2**63) + 1
    assert await ly.store.increment(k, -1) == -(2**63)
    with pytest.raises(SerializationError):
        await ly.store.increment(k, -1)
    assert await ly.store.get_versioned(k) == (str(-(2**63)), 2)


async def test_a_lock_item_keeps_its_fencing_counter_and_never_expires(
    ly: lockyard.Connection, backend: DynamoDBBackend
) -> None:
    pk = f"{backend.config.prefix}#l#deploy"
    guard = await ly.locks.try_acquire("deploy", 5)
    assert guard is not None
    held = await raw_item(backend, pk)
    assert held["own"] == {"S": guard.owner}
    assert held["kp"] == {"S": f"{backend.config.prefix}#l"}
    await guard.release()
    released = await raw_item(backend, pk)
    assert released["fence"] == {"N": str(guard.fencing_token)}
    assert not {"own", "dl", "kp", "expires_at"} & set(released)


async def test_reindexing_rewrites_one_item(
    ly: lockyard.Connection, backend: DynamoDBBackend
) -> None:
    k = "ns:acme:chain:c1"
    await ly.store.index_chain_ready(k, 5)
    await ly.store.index_chain_ready(k, -9)
    item = await raw_item(backend, f"{backend.config.prefix}#c#{k}")
    assert item == {
        "pk": {"S": f"{backend.config.prefix}#c#{k}"},
        "ip": {"S": f"{backend.config.prefix}#c"},
        "ts": {"N": "-9"},
    }


async def test_purge_removes_every_item_of_the_prefix_and_only_those(
    ly: lockyard.Connection, backend: DynamoDBBackend, moto_server: Any, shared_table: str
) -> None:
    async with lockyard.connect(moto_server.url(shared_table, f"{backend.config.prefix}x")) as nb:
        await nb.store.set("ns:acme:state:k", "neighbour")
        for i in range(30):
            await ly.store.set(f"ns:acme:state:k{i}", "v")
        await ly.store.index_timeout("ns:acme:state:k0", 1)
        await ly.locks.try_acquire("l", 5)
        assert await ly.store.purge() == 30
        assert await ly.store.scan_keys_by_kind("state") == []
        assert await ly.store.get_expired_timeouts(10) == []
        assert await ly.locks.list_held() == []
        assert await nb.store.get("ns:acme:state:k") == "neighbour"
        await nb.store.purge()


async def test_the_backend_describes_itself(ly: lockyard.Connection) -> None:
    assert ly.backend == "dynamodb"
    assert ly.guarantees == GUARANTEES
    assert "DynamoDB API 2012-08-10" in await ly.server_version()
    assert await ly.ping() > 0
