"""PostgreSQL specifics beyond the shared contract: statements, indexes, errors, sweep, LISTEN."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from postgres_helpers import backend_of, wait_until

import lockyard
from lockyard.backends import postgres as pg
from lockyard.backends.postgres import sql
from lockyard.backends.postgres.errors import ConnectTimeoutError
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.process import free_port

pytestmark = pytest.mark.postgres

SCHEMA = "pgtests"


# -- the handle -------------------------------------------------------------------------------


async def test_the_handle_reports_backend_version_and_guarantees(ly: lockyard.Connection) -> None:
    assert ly.backend == "postgresql"
    assert "database clock" in ly.guarantees.mutual_exclusion
    assert ly.guarantees.ttl_precision == "1 ms"
    assert (await ly.server_version()).startswith("PostgreSQL 15")
    assert 0 < await ly.ping() < 1


async def test_each_operation_is_one_statement(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(prefix=unique_prefix(), schema=SCHEMA, pool_size="1")
    async with lockyard.connect(url) as ly:
        logged: list[str] = []
        async with backend_of(ly).pool.acquire() as connection:
            connection.add_query_logger(lambda record: logged.append(record.query))
        store, key = ly.store, "ns:t:state:one"
        operations = {
            "check_and_set": store.check_and_set(key, "a", ttl=60),
            "get": store.get(key),
            "get_versioned": store.get_versioned(key),
            "set": store.set(key, "7"),
            "increment": store.increment(key, 1, ttl=60),
            "compare_and_swap": store.compare_and_swap(key, 3, "x"),
            "delete": store.delete(key),
            "scan_keys": store.scan_keys("ns", "t", "state", "o"),
            "scan_keys_by_kind": store.scan_keys_by_kind("state"),
            "index_timeout": store.index_timeout(key, 5),
            "get_expired_timeouts": store.get_expired_timeouts(5),
            "remove_timeout_index": store.remove_timeout_index(key),
            "index_chain_ready": store.index_chain_ready(key, 5),
            "get_ready_chains": store.get_ready_chains(5),
            "remove_chain_ready_index": store.remove_chain_ready_index(key),
        }
        for name, operation in operations.items():
            logged.clear()
            await operation
            await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not before
            assert len(logged) == 1, (name, logged)
        logged.clear()
        guard = await ly.locks.try_acquire("one", 5)
        assert guard is not None
        await guard.extend(5)
        await guard.is_held()
        await guard.release()
        await ly.locks.list_held()
        await ly.locks.break_lock("one")
        await asyncio.sleep(0)
        assert len(logged) == 6, logged


async def test_scans_and_due_reads_use_the_indexes(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    # Many stores and kinds, as in production: an index must beat reading the table.
    filler = unique_prefix()
    await raw.execute(
        f"""
        INSERT INTO {SCHEMA}.entries (prefix, key, value, version, expires_at)
        SELECT '{filler}' || (i % 50), 'ns:t:kind' || (i % 40) || ':k' || i, 'v', 1,
               CASE WHEN i % 3 = 0 THEN now() + interval '1 hour' END
        FROM generate_series(1, 20000) AS i;
        INSERT INTO {SCHEMA}.time_index (prefix, index_name, key, at_ms)
        SELECT '{filler}' || (i % 50), 'timeout', 'ns:t:state:k' || i, i
        FROM generate_series(1, 20000) AS i;
        ANALYZE {SCHEMA}.entries;
        ANALYZE {SCHEMA}.time_index;
        """
    )
    q = sql.render(SCHEMA)
    await raw.execute("SET plan_cache_mode = force_generic_plan")
    plans = {
        "scan_keys": (q.scan_keys, "text, text, text", "'p', 'ns:t:state:k1', 'ns:t:state:k2'"),
        "by_kind": (q.scan_keys_by_kind, "text, text", "'p', 'state'"),
        "due": (q.index_due, "text, text, bigint", "'p', 'timeout', 10"),
        "sweep": (q.sweep_expired, "bigint", "500"),
    }
    expected = {
        "scan_keys": "entries_pkey",
        "by_kind": "entries_by_kind",
        "due": "time_index_due",
        "sweep": "entries_by_expiry",
    }
    for name, (statement, types, args) in plans.items():
        await raw.execute(f"PREPARE {name}({types}) AS {statement}")
        plan = "\n".join(r[0] for r in await raw.fetch(f"EXPLAIN EXECUTE {name}({args})"))
        assert expected[name] in plan, plan
        assert "Seq Scan" not in plan, plan
    await raw.execute(f"DELETE FROM {SCHEMA}.entries WHERE starts_with(prefix, '{filler}')")
    await raw.execute(f"DELETE FROM {SCHEMA}.time_index WHERE starts_with(prefix, '{filler}')")


async def test_lookups_by_key_use_the_primary_key_before_any_analyze(
    postgres_server: PostgresServer, raw: asyncpg.Connection
) -> None:
    # A fresh schema filled faster than autovacuum analyzes it (what `make bench` does): the
    # generic plan of a removal by key once scanned the whole due index (13-24x slower passes).
    schema = f"fresh_{uuid.uuid4().hex[:8]}"
    async with lockyard.connect(postgres_server.url(prefix="p", schema=schema)) as ly:
        for i in range(300):
            await ly.store.index_timeout(f"ns:t:timeout:k{i}", i)
        q = sql.render(schema)
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        for name, statement, types, expected in [
            ("rm", q.index_remove, "text, text, text", "time_index_pkey"),
            ("due", q.index_due, "text, text, bigint", "time_index_due"),
        ]:
            await raw.execute(f"PREPARE {name}({types}) AS {statement}")
            args = "'p', 'timeout', " + ("'ns:t:timeout:k5'" if name == "rm" else "10")
            plan = "\n".join(r[0] for r in await raw.fetch(f"EXPLAIN EXECUTE {name}({args})"))
            assert f"using {expected} " in plan, plan
        assert await ly.store.get_expired_timeouts(9) == [f"ns:t:timeout:k{i}" for i in range(10)]
    await raw.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def test_scan_ranges_are_exact_at_the_edges_of_unicode(ly: lockyard.Connection) -> None:
    edge = ["a\U0010ffff", "a\U0010ffffz", "b", "a\ud7ff", "a\ue000", "a"]
    for i, id_ in enumerate(edge):
        await ly.store.set(f"ns:t:edge:{id_}", str(i))
    assert {k for k, _ in await ly.store.scan_keys("ns", "t", "edge", "a\U0010ffff")} == {
        "ns:t:edge:a\U0010ffff",
        "ns:t:edge:a\U0010ffffz",
    }
    assert {k for k, _ in await ly.store.scan_keys("ns", "t", "edge", "a\ud7ff")} == {
        "ns:t:edge:a\ud7ff"
    }
    assert len(await ly.store.scan_keys("ns", "t", "edge", "a")) == 5
    assert pg.prefix_successor("a\ud7ff") == "a\ue000"
    assert pg.prefix_successor("ab\U0010ffff\U0010ffff") == "ac"


async def test_increment_reads_only_canonical_int64_decimals(ly: lockyard.Connection) -> None:
    """The statement's own check, not ``::numeric``: what PostgreSQL's integer input (and
    Python's ``int()``) accept beyond the counter grammar is refused, and nothing changes."""
    key = "ns:t:counter:strict"
    for text in [
        " 7",
        "+7",
        "007",
        "-0",
        "7\n",
        "1_000",
        "0x10",
        "1e3",
        "\u0663",
        "--1",
        "9" * 200,
    ]:
        await ly.store.set(key, text)
        before = await ly.store.get_versioned(key)
        with pytest.raises(lockyard.SerializationError, match="not a counter"):
            await ly.store.increment(key, 1)
        assert await ly.store.get_versioned(key) == before
    for text, expected in [("0", 1), ("-1", 0), (str(2**63 - 2), 2**63 - 1)]:
        await ly.store.set(key, text)
        assert await ly.store.increment(key, 1) == expected
        assert await ly.store.get(key) == str(expected)


async def test_increment_of_an_out_of_range_value_is_refused(ly: lockyard.Connection) -> None:
    key = "ns:t:counter:big"
    await ly.store.set(key, str(2**63))
    with pytest.raises(lockyard.SerializationError):
        await ly.store.increment(key, -1)
    assert await ly.store.get_versioned(key) == (str(2**63), 1)
    await ly.store.set(key, str(-(2**63)))
    with pytest.raises(lockyard.SerializationError):
        await ly.store.increment(key, -1)
    assert await ly.store.increment(key, 1) == -(2**63) + 1


async def test_the_counter_check_stays_inside_the_primary_key_upsert(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    """The grammar is a conflict filter on the one row the upsert already found by primary key:
    no scan, no second statement; a refused value leaves the row unwritten."""
    await ly.store.set("ns:t:counter:plan", "+7")
    await raw.execute("SET plan_cache_mode = force_generic_plan")
    await raw.execute(f"PREPARE inc(text, text, bigint, bigint) AS {sql.render(SCHEMA).increment}")
    plan = "\n".join(r[0] for r in await raw.fetch("EXPLAIN EXECUTE inc('p', 'k', 1, NULL)"))
    assert "Conflict Arbiter Indexes: entries_pkey" in plan, plan
    assert "Conflict Filter:" in plan, plan
    assert "'^(0|-?[1-9][0-9]*)$'" in plan, plan
    assert "Scan on entries" not in plan, plan
    args = f"'{backend_of(ly).config.prefix}', 'ns:t:counter:plan', 1, NULL"
    run = await raw.fetch(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE inc({args})")
    counts = "\n".join(r[0] for r in run)
    assert "Tuples Inserted: 0" in counts, counts
    assert "Conflicting Tuples: 1" in counts, counts
    assert await ly.store.get_versioned("ns:t:counter:plan") == ("+7", 1)


# -- errors -----------------------------------------------------------------------------------


async def test_nothing_listening_is_a_connection_error(postgres_server: PostgresServer) -> None:
    url = f"postgresql://u:p@127.0.0.1:{free_port()}/db?timeout=2"
    started = time.monotonic()
    with pytest.raises(lockyard.BackendConnectionError) as raised:
        await lockyard.connect(url)
    assert time.monotonic() - started < 2
    assert isinstance(raised.value.__cause__, OSError)


async def test_a_wrong_password_is_a_backend_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(lockyard.BackendError) as raised:
        await lockyard.connect(postgres_server.url(password="wrong"))
    assert isinstance(raised.value.__cause__, asyncpg.InvalidPasswordError)
    assert "wrong" not in str(raised.value)


async def test_an_unknown_database_is_a_backend_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(lockyard.BackendError) as raised:
        await lockyard.connect(postgres_server.url(database="nope"))
    assert isinstance(raised.value.__cause__, asyncpg.InvalidCatalogNameError)


async def test_a_blocked_statement_times_out_and_the_handle_recovers(
    postgres_server: PostgresServer, raw: asyncpg.Connection
) -> None:
    url = postgres_server.url(prefix=unique_prefix(), schema=SCHEMA, timeout="0.5")
    async with lockyard.connect(url) as ly:
        key = "ns:t:state:blocked"
        await ly.store.set(key, "a")
        blocker = raw.transaction()
        await blocker.start()
        await raw.execute(f"SELECT * FROM {SCHEMA}.entries WHERE key = $1 FOR UPDATE", key)
        for operation in (ly.store.set(key, "b"), ly.store.increment(key, 1)):
            started = time.monotonic()
            with pytest.raises(lockyard.OperationTimeoutError):
                await operation
            assert time.monotonic() - started < 1.5
        await blocker.rollback()
        await ly.store.set(key, "c")
        assert await ly.store.get_versioned(key) == ("c", 2)
        await ly.store.purge()


def test_translate_error_maps_by_class() -> None:
    t = pg.translate_error
    assert isinstance(t(ConnectionRefusedError(111, "refused")), lockyard.BackendConnectionError)
    assert isinstance(t(asyncpg.CannotConnectNowError("starting")), lockyard.BackendConnectionError)
    assert isinstance(t(asyncpg.AdminShutdownError("bye")), lockyard.BackendConnectionError)
    assert isinstance(
        t(asyncpg.ConnectionDoesNotExistError("gone")), lockyard.BackendConnectionError
    )
    assert isinstance(t(asyncpg.InterfaceError("closed")), lockyard.BackendConnectionError)
    assert isinstance(t(asyncpg.QueryCanceledError("late")), lockyard.OperationTimeoutError)
    assert isinstance(t(TimeoutError()), lockyard.OperationTimeoutError)
    # A connect that timed out is an unreachable server, though it is a TimeoutError too.
    connect_timeout = ConnectTimeoutError(1.0)
    assert isinstance(t(connect_timeout), lockyard.BackendConnectionError)
    assert isinstance(t(asyncpg.InvalidPasswordError("no")), lockyard.BackendError)
    assert isinstance(t(asyncpg.UniqueViolationError("dup")), lockyard.BackendError)
    assert t(ValueError("not ours")) is None
    for exc in (asyncpg.InvalidPasswordError("no"), asyncpg.UniqueViolationError("dup")):
        mapped = t(exc)
        assert not isinstance(mapped, lockyard.BackendConnectionError | lockyard.ConfigError)


async def test_a_closed_handle_raises_a_lockyard_error(postgres_server: PostgresServer) -> None:
    ly = await lockyard.connect(postgres_server.url(prefix=unique_prefix(), schema=SCHEMA))
    await ly.close()
    with pytest.raises(lockyard.StateError):
        await ly.store.get("ns:t:state:x")


# -- background sweep -------------------------------------------------------------------------


async def count_rows(raw: asyncpg.Connection, store_prefix: str) -> int:
    count: int = await raw.fetchval(
        f"SELECT count(*) FROM {SCHEMA}.entries WHERE prefix = $1", store_prefix
    )
    return count


async def test_expired_rows_are_deleted_in_the_background(
    postgres_server: PostgresServer, raw: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg.backend, "SWEEP_INTERVAL_S", 0.1)
    store_prefix = unique_prefix()
    async with lockyard.connect(postgres_server.url(prefix=store_prefix, schema=SCHEMA)) as ly:
        # Every row must be counted before its TTL passes and the sweep takes it: the TTL is
        # well above what one write takes on this machine now.
        started = time.monotonic()
        await ly.store.set("ns:t:history:kept", "v")
        ttl = max(1.0, 20 * (time.monotonic() - started))
        await asyncio.gather(*(ly.store.set(f"ns:t:history:h{i}", "v", ttl=ttl) for i in range(50)))
        await ly.store.set("ns:t:history:later", "v", ttl=3600)
        assert await count_rows(raw, store_prefix) == 52

        async def swept() -> bool:
            return await count_rows(raw, store_prefix) == 2

        await wait_until(swept, timeout=ttl + 5)
        assert {k for k, _ in await ly.store.scan_keys_by_kind("history")} == {
            "ns:t:history:kept",
            "ns:t:history:later",
        }
        await ly.store.purge()


async def test_sweep_deletes_in_batches(
    postgres_server: PostgresServer, raw: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg.store, "SWEEP_BATCH", 7)
    # No background round may come first (on a loaded machine one did): the handle is the only
    # one on the schema, and its own sweep waits an hour.
    monkeypatch.setattr(pg.backend, "SWEEP_INTERVAL_S", 3600)
    store_prefix = unique_prefix()
    async with lockyard.connect(postgres_server.url(prefix=store_prefix, schema=SCHEMA)) as ly:
        await asyncio.gather(
            *(ly.store.set(f"ns:t:history:b{i}", "v", ttl=0.05) for i in range(30))
        )
        await asyncio.sleep(0.1)
        deleted = await backend_of(ly).store.sweep_expired()
        assert deleted >= 30
        assert await count_rows(raw, store_prefix) == 0
        await ly.store.purge()


# -- LISTEN/NOTIFY ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def peer(
    ly: lockyard.Connection, postgres_server: PostgresServer
) -> AsyncIterator[lockyard.Connection]:
    """A second handle on ly's store: another client, as another process would be (a release
    whose next waiter is in the releasing handle itself wakes it without a notification)."""
    url = postgres_server.url(prefix=backend_of(ly).config.prefix, schema=SCHEMA)
    async with lockyard.connect(url) as handle:
        yield handle


async def handover_time(ly: lockyard.Connection, peer: lockyard.Connection, name: str) -> float:
    """Seconds from a release by ``peer`` to ly's waiter holding the lock, polling made useless."""
    ly.locks.poll_initial_s = ly.locks.poll_cap_s = 5.0
    holder = await peer.locks.acquire(name, 30, timeout=1)
    waiter = asyncio.create_task(ly.locks.acquire(name, 30, timeout=10))
    await asyncio.sleep(0.2)
    released_at = time.monotonic()
    await holder.release()
    guard = await waiter
    elapsed = time.monotonic() - released_at
    assert guard.fencing_token == holder.fencing_token + 1
    await guard.release()
    return elapsed


async def test_release_wakes_a_waiter_through_notify(
    ly: lockyard.Connection, peer: lockyard.Connection
) -> None:
    assert await handover_time(ly, peer, "notify") < 0.1
    assert backend_of(ly).listener.connections == 1


async def test_break_wakes_a_waiter_through_notify(
    ly: lockyard.Connection, peer: lockyard.Connection
) -> None:
    ly.locks.poll_initial_s = ly.locks.poll_cap_s = 5.0
    holder = await ly.locks.acquire("broken", 30, timeout=1)
    waiter = asyncio.create_task(ly.locks.acquire("broken", 30, timeout=10))
    await asyncio.sleep(0.2)
    broken_at = time.monotonic()
    assert await peer.locks.break_lock("broken")
    guard = await waiter
    assert time.monotonic() - broken_at < 0.1
    assert guard.fencing_token > holder.fencing_token
    await guard.release()


async def test_the_listener_reconnects_after_its_connection_is_killed(
    ly: lockyard.Connection, peer: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    listener = backend_of(ly).listener
    assert await handover_time(ly, peer, "before") < 0.1
    assert listener.backend_pid is not None
    assert await raw.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)

    async def reconnected() -> bool:
        return listener.connections == 2

    await wait_until(reconnected)
    assert await handover_time(ly, peer, "after") < 0.1


async def test_waiters_still_get_the_lock_while_the_listener_is_down(
    ly: lockyard.Connection,
) -> None:
    listener = backend_of(ly).listener
    holder = await ly.locks.acquire("polled", 30, timeout=1)
    waiter = asyncio.create_task(ly.locks.acquire("polled", 30, timeout=10))
    await asyncio.wait_for(listener.connected.wait(), 5)
    await listener.close()  # no release signal at all from here on: only polling is left
    assert not listener.connected.is_set()
    await holder.release()
    guard = await waiter
    assert guard.fencing_token == holder.fencing_token + 1
    await guard.release()


async def test_each_store_listens_on_its_own_channel(postgres_server: PostgresServer) -> None:
    assert pg.release_channel("s", "a") != pg.release_channel("s", "b")
    assert pg.release_channel("s", "a") != pg.release_channel("t", "a")
    assert len(pg.release_channel("x" * 63, "y" * 128)) <= 63


async def test_close_leaves_no_connections_behind(
    postgres_server: PostgresServer, raw: asyncpg.Connection
) -> None:
    store_prefix = unique_prefix()
    ly = await lockyard.connect(postgres_server.url(prefix=store_prefix, schema=SCHEMA))
    guard = await ly.locks.acquire("x", 5, timeout=1)
    await guard.release()
    await asyncio.gather(*(ly.store.get(f"ns:t:state:{i}") for i in range(20)))
    await ly.close()
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lockyard%' "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )

    async def all_closed() -> bool:
        return await raw.fetchval(query) == 0

    await wait_until(all_closed)
