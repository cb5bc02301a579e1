"""PostgreSQL lock queue specifics: the waiters table, its indexes, and the release payload."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest
from postgres_helpers import backend_of, wait_until

import lockyard
from lockyard.backends.postgres import sql
from lockyard.locks import parse_release_signal
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres

SCHEMA = "pgqueue"


async def waiters(raw: asyncpg.Connection, store_prefix: str, name: str) -> list[str]:
    rows = await raw.fetch(
        f"SELECT owner FROM {SCHEMA}.lock_waiters WHERE prefix = $1 AND name = $2 ORDER BY ticket",
        store_prefix,
        name,
    )
    return [row[0] for row in rows]


async def test_the_waiters_table_is_unlogged_and_indexed(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    persistence = await raw.fetchval(
        "SELECT relpersistence::text FROM pg_class WHERE oid = $1::regclass",
        f"{SCHEMA}.lock_waiters",
    )
    assert persistence == "u"  # no WAL: entries live seconds; lock safety is in `locks`
    indexes = {
        row[0]
        for row in await raw.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            SCHEMA,
            "lock_waiters",
        )
    }
    assert indexes == {"lock_waiters_pkey", "lock_waiters_queue"}


async def test_a_waiter_is_queued_while_it_waits_and_removed_when_it_gets_the_lock(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    store_prefix = backend_of(ly).config.prefix
    holder = await ly.locks.acquire("q", 30, timeout=1)
    assert await waiters(raw, store_prefix, "q") == []  # an uncontended acquire never queues
    first = asyncio.create_task(ly.locks.acquire("q", 30, timeout=10))
    await asyncio.sleep(0.15)
    second = asyncio.create_task(ly.locks.acquire("q", 30, timeout=10))
    await asyncio.sleep(0.15)
    queued = await waiters(raw, store_prefix, "q")
    assert len(queued) == 2
    await holder.release()
    guard = await first
    assert guard.owner == queued[0]
    assert await waiters(raw, store_prefix, "q") == [queued[1]]
    await guard.release()
    await (await second).release()
    assert await waiters(raw, store_prefix, "q") == []


async def test_a_free_lock_takes_one_statement_and_only_a_refused_first_attempt_takes_two(
    postgres_server: PostgresServer, raw: asyncpg.Connection
) -> None:
    url = postgres_server.url(prefix=unique_prefix(), schema=SCHEMA, pool_size="1")
    async with lockyard.connect(url) as ly, lockyard.connect(url) as peer:
        q = sql.render(SCHEMA)
        logged: list[str] = []
        async with backend_of(ly).pool.acquire() as connection:
            connection.add_query_logger(lambda record: logged.append(record.query))

        def acquisitions() -> list[str]:
            return [query for query in logged if query in (q.acquire_unqueued, q.acquire)]

        free = await ly.locks.acquire("f", 30, timeout=5)
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not before
        assert acquisitions() == [q.acquire_unqueued]
        await free.release()
        # A free lock opens no release watch, so nothing has started the LISTEN connection.
        listener = backend_of(ly).listener
        assert listener.connections == 0
        assert not listener.connected.is_set()

        holder = await peer.locks.acquire("f", 30, timeout=5)
        logged.clear()
        waiter = asyncio.create_task(ly.locks.acquire("f", 30, timeout=10))

        async def retried() -> bool:
            return len(acquisitions()) >= 3

        await wait_until(retried, timeout=10)
        # The first attempt finds the lock held and queues; later attempts only renew the entry.
        assert acquisitions()[:2] == [q.acquire_unqueued, q.acquire]
        # The refused waiter watches for releases: the LISTEN connection is up.
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert q.acquire_unqueued not in acquisitions()[2:]
        # Someone here waits for the name: it is contended, and a newcomer queues at once.
        logged.clear()
        second = asyncio.create_task(ly.locks.acquire("f", 30, timeout=10))

        async def queued_twice() -> bool:
            # The server shows the entry before this client has read the statement's reply
            # (and called its query loggers, as the first check here found once): both.
            queued = await waiters(raw, backend_of(ly).config.prefix, "f")
            return len(queued) == 2 and bool(acquisitions())

        await wait_until(queued_twice, timeout=10)
        assert acquisitions()[0] == q.acquire
        logged.clear()
        await holder.release()
        guard = await waiter
        await asyncio.sleep(0)
        assert acquisitions()  # its turn: ACQUIRE alone
        assert q.acquire_unqueued not in acquisitions()
        await guard.release()
        await (await second).release()

        held = await peer.locks.acquire("f", 30, timeout=5)
        with pytest.raises(lockyard.LockTimeoutError):
            await ly.locks.acquire("f", 30, timeout=0.3)
        await held.release()
        assert backend_of(ly).locks._waiting == {}  # granted and timed-out waiters are gone


async def test_a_newcomer_to_a_free_lock_waits_behind_a_live_waiter(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    store_prefix = backend_of(ly).config.prefix
    first = await ly.locks.acquire("w", 30, timeout=5)  # the row exists, as under any waiter
    await first.release()
    await raw.execute(
        f"INSERT INTO {SCHEMA}.lock_waiters (prefix, name, owner, client, expires_at) "
        "VALUES ($1, 'w', 'earlier', 'elsewhere', now() + interval '1 hour')",
        store_prefix,
    )
    with pytest.raises(lockyard.LockTimeoutError):
        await ly.locks.acquire("w", 30, timeout=0.3)  # its turn comes after 'earlier'
    guard = await ly.locks.try_acquire("w", 30)  # an attempt that does not queue takes it
    assert guard is not None
    await guard.release()
    await raw.execute(f"DELETE FROM {SCHEMA}.lock_waiters WHERE prefix = $1", store_prefix)


async def test_release_notifies_only_a_next_owner_in_another_client(
    ly: lockyard.Connection, postgres_server: PostgresServer
) -> None:
    url = postgres_server.url(prefix=backend_of(ly).config.prefix, schema=SCHEMA)
    listener = await asyncpg.connect(postgres_server.dsn())
    payloads: asyncio.Queue[str] = asyncio.Queue()
    channel = backend_of(ly).listener.channel
    await listener.add_listener(channel, lambda *args: payloads.put_nowait(str(args[3])))
    try:
        async with lockyard.connect(url) as peer:  # another client, as another process
            name = "odd\nname"  # names may contain newlines: the owner follows the last one
            alone = await ly.locks.acquire(name, 30, timeout=1)
            await alone.release()  # nobody waits: nothing is sent
            holder = await peer.locks.acquire(name, 30, timeout=1)
            waiter = asyncio.create_task(ly.locks.acquire(name, 30, timeout=10))
            await asyncio.sleep(0.15)
            await holder.release()  # the next owner waits in another client: notified
            guard = await waiter
            payload = await asyncio.wait_for(payloads.get(), 5)
            assert parse_release_signal(payload) == (name, guard.owner)
            assert payloads.empty()
            local = asyncio.create_task(ly.locks.acquire(name, 30, timeout=10))
            await asyncio.sleep(0.15)
            await guard.release()  # the next owner waits here: woken directly
            await (await local).release()
            await asyncio.sleep(0.1)
            assert payloads.empty()
    finally:
        await listener.close()


async def test_a_release_notifies_the_head_of_a_long_queue_alone(
    ly: lockyard.Connection, raw: asyncpg.Connection, postgres_server: PostgresServer
) -> None:
    store_prefix = backend_of(ly).config.prefix
    listener = await asyncpg.connect(postgres_server.dsn())
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(
        backend_of(ly).listener.channel, lambda *args: payloads.put_nowait(str(args[3]))
    )
    try:
        guard = await ly.locks.acquire("long", 30, timeout=5)
        await raw.execute(
            f"INSERT INTO {SCHEMA}.lock_waiters (prefix, name, owner, client, expires_at) "
            "SELECT $1, 'long', 'waiter' || i, 'elsewhere', now() + interval '1 hour' "
            "FROM generate_series(1, 3) AS i ORDER BY i",
            store_prefix,
        )
        await guard.release()
        payload = await asyncio.wait_for(payloads.get(), 5)
        assert parse_release_signal(payload) == ("long", "waiter1")
        await asyncio.sleep(0.2)
        assert payloads.empty()
    finally:
        await listener.close()
        await raw.execute(f"DELETE FROM {SCHEMA}.lock_waiters WHERE prefix = $1", store_prefix)


async def test_the_sweep_reclaims_abandoned_entries(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    store_prefix = backend_of(ly).config.prefix
    await raw.execute(
        f"INSERT INTO {SCHEMA}.lock_waiters (prefix, name, owner, client, expires_at) "
        "VALUES ($1, 'gone', 'crashed', 'c', now() - interval '1 second')",
        store_prefix,
    )
    locks = backend_of(ly).locks
    assert await locks.sweep_waiters() >= 1
    assert await waiters(raw, store_prefix, "gone") == []


async def test_lock_statements_use_the_indexes(
    ly: lockyard.Connection, raw: asyncpg.Connection
) -> None:
    # Many stores, locks and waiters, as in production: an index must beat reading the table.
    filler = unique_prefix()
    await raw.execute(
        f"""
        INSERT INTO {SCHEMA}.locks (prefix, name, owner, expires_at, fencing)
        SELECT '{filler}' || (i % 50), 'lock' || i, NULL, NULL, 1
        FROM generate_series(1, 20000) AS i;
        INSERT INTO {SCHEMA}.lock_waiters (prefix, name, owner, client, expires_at)
        SELECT '{filler}' || (i % 50), 'lock' || (i % 2000), 'owner' || i, 'c',
               now() + interval '1 hour'
        FROM generate_series(1, 20000) AS i;
        ANALYZE {SCHEMA}.locks;
        ANALYZE {SCHEMA}.lock_waiters;
        """
    )
    q = sql.render(SCHEMA)
    await raw.execute("SET plan_cache_mode = force_generic_plan")
    plans = {
        "acquire_unqueued": (q.acquire_unqueued, "text, text, text, bigint", "'p', 'l', 'o', 5000"),
        "acquire": (
            q.acquire,
            "text, text, text, bigint, bigint, text",
            "'p', 'l', 'o', 5000, 2000, 'me'",
        ),
        "release": (q.release, "text, text, text, text, text", "'p', 'l', 'o', 'c', 'me'"),
        "break": (q.break_, "text, text, text, text", "'p', 'l', 'c', 'me'"),
        "leave": (q.leave_queue, "text, text, text, text, text", "'p', 'l', 'o', 'c', 'me'"),
    }
    expected = {
        "acquire_unqueued": {"locks_pkey", "lock_waiters_queue"},
        "acquire": {"locks_pkey", "lock_waiters_queue", "lock_waiters_pkey"},
        "release": {"locks_pkey", "lock_waiters_queue"},
        "break": {"locks_pkey", "lock_waiters_queue"},
        "leave": {"locks_pkey", "lock_waiters_queue"},
    }
    try:
        for name, (statement, types, args) in plans.items():
            await raw.execute(f"PREPARE {name}({types}) AS {statement}")
            plan = "\n".join(r[0] for r in await raw.fetch(f"EXPLAIN EXECUTE {name}({args})"))
            assert "Seq Scan" not in plan, plan
            assert "Sort" not in plan, plan  # the queue's head comes in index order
            for index in expected[name]:
                assert re.search(rf"\b{index}\b", plan), (index, plan)
    finally:
        await raw.execute(f"DELETE FROM {SCHEMA}.locks WHERE starts_with(prefix, '{filler}')")
        await raw.execute(
            f"DELETE FROM {SCHEMA}.lock_waiters WHERE starts_with(prefix, '{filler}')"
        )
