"""Auto-pipelining on a real server: concurrent operations share a connection and are written in
batches (a burst in parts once it outgrows what is in flight), with the semantics of one
connection per operation.

Replies reach the right callers in order (also around error replies and cancelled callers), the
operation timeout still bounds each call, a failed connection fails exactly the operations it
carried, MONITOR sees the same commands as through the pool, and a large value does not hold up
small operations. ``CLIENT PAUSE WRITE`` keeps chosen writes in flight for as long as a test
needs (reads still pass), on a server only that test uses.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis import exceptions as rx
from redis_helpers import backend_of

import lockyard
from lockyard import BackendConnectionError, OperationTimeoutError
from lockyard.backends.redis.autopipeline import AutoPipeline
from lockyard.backends.redis.backend import RedisBackend
from lockyard.backends.redis.pipelined import EARLY_WRITE, LARGE_BYTES, PipelinedConnection
from lockyard.store import MAX_VALUE_BYTES
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

TASKS = 200


def pipeline_of(ly: lockyard.Connection) -> AutoPipeline:
    pipeline = backend_of(ly).client.auto_pipeline
    assert pipeline is not None, "auto-pipelining is on by default"
    return pipeline


def live(pipeline: AutoPipeline) -> list[PipelinedConnection]:
    return [connection for connection in pipeline.connections if not connection.retired]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_concurrent_operations_share_a_connection_and_get_their_own_replies(
    redis_server: RedisServer,
) -> None:
    async with lockyard.connect(redis_server.url(unique_prefix())) as ly:
        store = ly.store
        await store.get("ns:acme:state:warm")  # the connection is open before the burst

        async def one(i: int) -> tuple[int, str | None, int]:
            counted = await store.increment("ns:acme:counter:shared", 1)
            await store.set(f"ns:acme:state:k{i}", f"value-{i}")
            value = await store.get(f"ns:acme:state:k{i}")
            held = await ly.locks.try_acquire(f"lock-{i}", 5)
            assert held is not None
            await held.release()
            return counted, value, held.fencing_token

        results = await asyncio.gather(*(one(i) for i in range(TASKS)))
        # Each increment answered its own caller: every count exactly once.
        assert sorted(counted for counted, _, _ in results) == list(range(1, TASKS + 1))
        assert [value for _, value, _ in results] == [f"value-{i}" for i in range(TASKS)]
        assert {token for _, _, token in results} == {1}
        pipeline = pipeline_of(ly)
        (connection,) = live(pipeline)
        print(
            f"\n{connection.requests} requests in {connection.writes} writes "
            f"({connection.requests / connection.writes:.1f} per write)"
        )
        assert connection.requests >= 4 * TASKS
        assert connection.requests / connection.writes >= 8  # batches, not one write each


async def test_a_burst_is_written_in_parts_once_it_outgrows_what_is_in_flight(
    redis_server: RedisServer,
) -> None:
    """The server works on the first part of a burst while the rest is queued (EARLY_WRITE)."""
    async with lockyard.connect(redis_server.url(unique_prefix())) as ly:
        await ly.store.get("ns:acme:state:warm")  # open, and nothing in flight
        (connection,) = live(pipeline_of(ly))
        assert connection.outstanding == 0
        before = connection.writes

        futures = [connection.send(("ECHO", f"m{i}")) for i in range(EARLY_WRITE * 2 + 4)]

        # Nothing was in flight: the first EARLY_WRITE went at once, then as many again (as many
        # as in flight); the last 4 wait for the end of the round, being fewer than in flight.
        assert connection.writes - before == 2
        await asyncio.sleep(0)
        assert connection.writes - before == 3
        assert await asyncio.gather(*futures) == [f"m{i}" for i in range(EARLY_WRITE * 2 + 4)]


async def test_error_replies_and_cancelled_callers_leave_the_others_replies_in_order(
    own_redis_server: RedisServer,
) -> None:
    async with lockyard.connect(own_redis_server.url(unique_prefix())) as ly:
        client = backend_of(ly).client
        await client.set("text", "not a number")
        await client.set("number", "41")

        async def mixed(i: int) -> object:
            try:
                if i % 3 == 0:
                    return await client.incr("text")
                return await client.incr("number") if i % 3 == 1 else await client.get("text")
            except rx.ResponseError as exc:
                return exc

        results = await asyncio.gather(*(mixed(i) for i in range(90)))
        assert all(isinstance(results[i], rx.ResponseError) for i in range(0, 90, 3))
        assert sorted(results[i] for i in range(1, 90, 3)) == list(range(42, 72))  # type: ignore[type-var]
        assert all(results[i] == "not a number" for i in range(2, 90, 3))

        # A cancelled caller's reply is dropped when it comes; the next caller gets its own.
        with own_redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
            try:
                write = asyncio.create_task(ly.store.set("ns:acme:state:w", "written"))
                await asyncio.sleep(0.05)
                read = asyncio.create_task(client.get("number"))
                await asyncio.sleep(0.05)
                write.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await write
                assert not read.done()  # behind the paused write on the same connection
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        assert await read == "71"
        assert await client.get("number") == "71"


_OTHER = {"PING", "SUBSCRIBE"}


#: The command that ends a MONITOR capture: everything sent before it has been seen once it is.
_END_OF_CAPTURE = "lockyard-test-end-of-monitor"


def _monitored(admin_factory: Callable[[], Any], seen: list[str]) -> None:
    with admin_factory() as admin, admin.monitor() as monitor:
        while True:
            entry = monitor.next_command()
            # Lua's own calls, and the release-signal subscription (made once, by the first
            # waiter), are not what a handle's operations send.
            command = entry["command"]
            if command == f"ECHO {_END_OF_CAPTURE}":
                return
            if entry.get("client_type") != "lua" and command.split(" ", 1)[0] not in _OTHER:
                seen.append(command)


@pytest.fixture
def monitor(redis_server: RedisServer) -> Iterator[Callable[[], list[str]]]:
    """MONITOR on a thread; the returned function stops it and gives the commands seen.

    It stops at a marker command sent last, not at the first line read after being told to:
    a thread that lags behind the server (a loaded machine) still has lines to read then."""
    seen: list[str] = []
    thread = threading.Thread(
        target=_monitored, args=(lambda: redis_server.admin(socket_timeout=10), seen)
    )
    thread.start()
    time.sleep(0.2)  # MONITOR is on before the test issues anything

    def stopped() -> list[str]:
        if thread.is_alive():
            with redis_server.admin() as admin:
                admin.echo(_END_OF_CAPTURE)
            thread.join(10)
        return list(seen)

    yield stopped
    stopped()


# Owner tokens, client ids and the pooled/pipelined difference in key names do not matter:
# tokens are random per call, so they are replaced before comparing.
_TOKENS = re.compile(r"\b[0-9a-f]{16}(?:[0-9a-f]{16})?\b")


async def test_monitor_shows_the_same_commands_as_through_the_pool(
    redis_server: RedisServer, monitor: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No background sweep of the prefix in between (on a loaded machine the workload outlasted
    # the sweep interval, and the sweep's commands landed on one side only).
    monkeypatch.setattr(RedisBackend, "sweep_interval_s", 3600.0)
    prefix = unique_prefix()
    async with lockyard.connect(redis_server.url(prefix)) as ly:
        client = backend_of(ly).client
        pipeline = client.auto_pipeline

        async def workload(tag: str) -> None:
            store = ly.store
            for i in range(3):  # sequential: the order is the same both ways
                await store.set(f"ns:acme:state:{tag}{i}", "v", ttl=60)
                await store.get(f"ns:acme:state:{tag}{i}")
                await store.increment(f"ns:acme:counter:{tag}", 2)
                await store.index_timeout(f"ns:acme:state:{tag}{i}", 1000 + i)
                guard = await ly.locks.acquire(f"{tag}-lock", 5, timeout=1)
                await guard.release()
            await asyncio.gather(*(store.get(f"ns:acme:state:{tag}{i}") for i in range(20)))

        await workload("x")
        client.auto_pipeline = None  # the same handle, every command through the pool
        try:
            await client.echo(f"{prefix} boundary")
            await workload("x")
        finally:
            client.auto_pipeline = pipeline
    commands = [_TOKENS.sub("<token>", line) for line in monitor() if prefix in line]
    boundary = commands.index(f"ECHO {prefix} boundary")
    pipelined, pooled = commands[:boundary], commands[boundary + 1 :]
    assert len(pipelined) == len(pooled) > 20
    # The sequential part in the same order; the concurrent reads as the same multiset.
    assert pipelined[:-20] == pooled[:-20]
    assert Counter(pipelined[-20:]) == Counter(pooled[-20:])


async def test_the_operation_timeout_holds_and_a_silent_connection_is_retired(
    own_redis_server: RedisServer,
) -> None:
    timeout = 0.3
    url = own_redis_server.url(unique_prefix(), timeout=str(timeout))
    async with lockyard.connect(url) as ly:
        await ly.store.set("ns:acme:state:k", "before")
        pipeline = pipeline_of(ly)
        (stalled,) = live(pipeline)
        with own_redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
            try:

                async def timed_write(i: int) -> float:
                    started = time.monotonic()
                    with pytest.raises(OperationTimeoutError):
                        await ly.store.set(f"ns:acme:state:k{i}", "during")
                    return time.monotonic() - started

                took = await asyncio.gather(*(timed_write(i) for i in range(10)))
                assert all(timeout <= t < timeout + 0.5 for t in took), took
                # No reply for half a timeout, and callers gave up: the connection takes no new
                # operation, and a read (which the pause lets through) runs on a new one at once.
                assert stalled.retired
                started = time.monotonic()
                assert await ly.store.get("ns:acme:state:k") == "before"
                assert time.monotonic() - started < timeout
                assert stalled not in live(pipeline)
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        await until(lambda: stalled.closed)  # its last reply came or was abandoned: closed
        await ly.store.set("ns:acme:state:k", "after")
        assert await ly.store.get("ns:acme:state:k") == "after"


async def test_a_retired_connection_still_awaiting_a_reply_closes_with_the_handle(
    own_redis_server: RedisServer,
) -> None:
    """A retired connection leaves the list new requests pick from, but not the handle: a paused
    server never answers, and a socket nobody closes would outlive the handle."""
    ly = await lockyard.connect(own_redis_server.url(unique_prefix(), timeout="5"))
    try:
        await ly.store.get("ns:acme:state:warm")
        pipeline = pipeline_of(ly)
        (stalled,) = live(pipeline)
        with own_redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
            try:
                write = asyncio.create_task(ly.store.set("ns:acme:state:k", "v"))
                await until(lambda: stalled.outstanding == 1)
                stalled.retire()  # as after a death elsewhere: its write is still in flight
                assert await ly.store.get("ns:acme:state:k") is None  # on a new connection
                assert stalled not in pipeline.connections
                assert not stalled.closed
            finally:
                await ly.close()
                admin.execute_command("CLIENT", "UNPAUSE")
        assert stalled.closed
        with pytest.raises(BackendConnectionError):
            await write
    finally:
        await ly.close()


async def test_a_failed_connection_fails_exactly_the_operations_it_carried(
    own_redis_server: RedisServer,
) -> None:
    async with lockyard.connect(own_redis_server.url(unique_prefix())) as ly:
        store = ly.store
        await store.get("ns:acme:state:warm")
        pipeline = pipeline_of(ly)
        doomed = await _client_id(live(pipeline)[0])
        with own_redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
            try:
                # A large write makes the first connection heavy: what follows takes a second.
                large = asyncio.create_task(store.set("ns:acme:state:big", "x" * MAX_VALUE_BYTES))
                await asyncio.sleep(0)
                small = [
                    asyncio.create_task(store.set(f"ns:acme:state:s{i}", "v")) for i in range(20)
                ]
                await until(lambda: len(live(pipeline)) == 2)
                first, second = live(pipeline)
                assert first.heavy
                assert not second.heavy
                await until(lambda: first.outstanding == 1 and second.outstanding == 20)
                assert admin.client_kill_filter(_id=doomed) == 1
                with pytest.raises(BackendConnectionError):
                    await large
                await asyncio.sleep(0.1)
                assert not any(task.done() for task in small)  # on the other connection
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        await asyncio.gather(*small)
        assert await store.get("ns:acme:state:s7") == "v"
        assert await store.get("ns:acme:state:big") is None


async def _client_id(connection: PipelinedConnection) -> int:
    reply: int = await connection.send(("CLIENT", "ID"))
    return reply


async def test_a_large_value_does_not_stall_small_operations(
    own_redis_server: RedisServer,
) -> None:
    big = "b" * MAX_VALUE_BYTES
    assert len(big) >= LARGE_BYTES
    async with lockyard.connect(own_redis_server.url(unique_prefix())) as ly:
        store = ly.store
        await store.set("ns:acme:state:small", "s")
        with own_redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
            try:
                large = asyncio.create_task(store.set("ns:acme:state:big", big))
                await asyncio.sleep(0)
                reads = await asyncio.wait_for(
                    asyncio.gather(*(store.get("ns:acme:state:small") for _ in range(50))), 2
                )
                assert reads == ["s"] * 50
                assert not large.done()  # still paused, and nothing waited behind it
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        await large

        # Large replies and small ones interleaved: every caller gets its own, intact.
        async def read(i: int) -> bool:
            key = "ns:acme:state:big" if i % 4 == 0 else "ns:acme:state:small"
            return await store.get(key) == (big if i % 4 == 0 else "s")

        assert all(await asyncio.gather(*(read(i) for i in range(80))))
        writers: list[Awaitable[None]] = [
            store.set(f"ns:acme:state:big{i}", f"{i}" * (MAX_VALUE_BYTES // 4)) for i in range(8)
        ]
        await asyncio.gather(*writers)
        for i in range(8):
            assert await store.get(f"ns:acme:state:big{i}") == f"{i}" * (MAX_VALUE_BYTES // 4)


async def test_a_handle_holds_one_connection_once_it_has_loaded_its_scripts(
    redis_server: RedisServer,
) -> None:
    """Loading the scripts goes over the handle's own pipelined connection: no second one stays
    open (the operator keeps a handle per StateStore, so each extra is one per store)."""

    def clients() -> set[int]:
        with redis_server.admin() as admin:
            return {int(c["id"]) for c in admin.client_list() if c.get("name") == "lockyard"}

    before = clients()
    async with lockyard.connect(redis_server.url(unique_prefix())) as ly:
        await ly.store.set("ns:t:state:k", "v")
        assert len(clients() - before) == 1
        await ly.store.purge()
