"""What the Redis backend sends: one round trip per operation, one hash slot per operation, the
documented key layout, index maintenance, script reloads and timeouts."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.crc import key_slot
from redis_helpers import backend_of, fresh_connection

import lockyard
from lockyard import OperationTimeoutError, SerializationError
from lockyard.backends.redis import FENCING_EPOCH_SHIFT, RedisBackend, glob_escape
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

ROOT = repository_root()
MONITOR_LINE = re.compile(r"^[\d.]+ \[\d+ (\S+)\] (.*)$")
ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x":
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


class Monitor:
    """MONITOR on its own connection: what the server executed, client commands and Lua's."""

    def __init__(self, server: RedisServer) -> None:
        self._client = Redis(port=server.port, decode_responses=True)
        self._monitor: Any = None

    async def __aenter__(self) -> Monitor:
        self._monitor = self._client.monitor()
        await self._monitor.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._monitor.__aexit__(*exc)
        await self._client.aclose()

    async def record(self, action: Callable[[], Awaitable[object]]) -> list[tuple[str, list[str]]]:
        """(source, arguments) of every command between two markers around ``action``."""
        marker = f"marker-{time.monotonic_ns()}"
        async with Redis(port=self._client.connection_pool.connection_kwargs["port"]) as admin:
            await admin.echo(marker + "-start")
            await action()
            await admin.echo(marker + "-end")
        seen: list[tuple[str, list[str]]] = []
        recording = False
        while True:
            async with asyncio.timeout(5):
                raw = await self._monitor.connection.read_response()
            match = MONITOR_LINE.match(raw)
            assert match is not None, raw
            source, rest = match.groups()
            args = [_unescape(a) for a in ARGUMENT.findall(rest)]
            head = [args[0].lower(), *args[1:2]]
            if head == ["echo", marker + "-start"]:
                recording = True
            elif head == ["echo", marker + "-end"]:
                return seen
            elif recording:
                seen.append(("lua" if source == "lua" else "client", args))


KEYLESS = {"time", "publish"}


def _keys(args: list[str]) -> list[str]:
    command = args[0].lower()
    if command in {"evalsha", "eval"}:
        return args[3 : 3 + int(args[2])]
    if command in KEYLESS or len(args) < 2:
        return []
    return [args[1]]


@pytest_asyncio.fixture
async def ly(redis_server: RedisServer) -> AsyncIterator[lockyard.Connection]:
    async with fresh_connection(redis_server.url(unique_prefix()) + "&pool_size=1") as connection:
        yield connection


async def test_every_operation_is_one_round_trip_in_one_hash_slot(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    store, locks = ly.store, ly.locks
    k = "ns:acme:state:id:with:colons"
    counter = "ns:acme:counter:c"
    await store.set(k, "warm-up")  # the pool's one connection is open before we watch
    guard = None

    async def acquire() -> None:
        nonlocal guard
        guard = await locks.try_acquire("lock}with{braces", 30)

    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "check_and_set": lambda: store.check_and_set("ns:acme:dedup:d", "v", ttl=30),
        "get": lambda: store.get(k),
        "get_versioned": lambda: store.get_versioned(k),
        "set": lambda: store.set(k, "v"),
        "set with ttl": lambda: store.set(k, "v", ttl=30),
        "delete": lambda: store.delete("ns:acme:dedup:d"),
        "increment": lambda: store.increment(counter, 5, ttl=30),
        "compare_and_swap": lambda: store.compare_and_swap(k, 3, "w"),
        "scan_keys": lambda: store.scan_keys("ns", "acme", "state", prefix="id:"),
        "scan_keys_by_kind": lambda: store.scan_keys_by_kind("state"),
        "index_timeout": lambda: store.index_timeout(k, 10),
        "remove_timeout_index": lambda: store.remove_timeout_index(k),
        "get_expired_timeouts": lambda: store.get_expired_timeouts(100),
        "index_chain_ready": lambda: store.index_chain_ready(k, 10),
        "get_ready_chains": lambda: store.get_ready_chains(100),
        "try_acquire": acquire,
        "extend": lambda: guard.extend(30),  # type: ignore[union-attr]
        "is_held": lambda: guard.is_held(),  # type: ignore[union-attr]
        "release": lambda: guard.release(),  # type: ignore[union-attr]
        "break_lock": lambda: locks.break_lock("lock}with{braces"),
    }
    async with Monitor(redis_server) as monitor:
        for name, operation in operations.items():
            commands = await monitor.record(operation)
            sent = [args for source, args in commands if source == "client"]
            assert len(sent) == 1, f"{name} sent {sent}"
            assert sent[0][0].lower() not in {"keys", "scan"}, name
            touched = {key for _, args in commands for key in _keys(args)}
            assert touched, name
            assert all(key.startswith(f"lockyard:{{{ly.prefix}|") for key in touched), touched
            slots = {key_slot(key.encode()) for key in touched}
            assert len(slots) == 1, f"{name} touched keys in {len(slots)} slots: {touched}"


async def test_the_layout_is_the_documented_one(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    p = ly.prefix
    await ly.store.set("ns:acme:state:a:b", "v", ttl=60)
    await ly.store.increment("ns:acme:counter:c", 2)
    await ly.store.index_timeout("ns:acme:state:a:b", 5)
    await ly.store.index_chain_ready("ns:acme:state:a:b", 6)
    guard = await ly.locks.try_acquire("job", 30)
    assert guard is not None
    with redis_server.admin() as admin:
        keys = set(admin.scan_iter(match=glob_escape(f"lockyard:{{{p}|") + "*"))
        assert keys == {
            f"lockyard:{{{p}|state}}:d:ns:acme:state:a:b",
            f"lockyard:{{{p}|state}}:i",
            f"lockyard:{{{p}|state}}:x",
            f"lockyard:{{{p}|counter}}:d:ns:acme:counter:c",
            f"lockyard:{{{p}|counter}}:i",
            f"lockyard:{{{p}|}}:timeout",
            f"lockyard:{{{p}|}}:chain",
            f"lockyard:{{{p}|lock:job}}:lease",
            f"lockyard:{{{p}|lock:job}}:fence",
        }
        data = f"lockyard:{{{p}|state}}:d:ns:acme:state:a:b"
        assert admin.hgetall(data) == {"v": "v", "n": "1"}
        # The expiry set holds exactly the deadline Redis enforces.
        deadline = admin.zscore(f"lockyard:{{{p}|state}}:x", "ns:acme:state:a:b")
        assert deadline is not None
        assert int(deadline) == admin.pexpiretime(data)
        assert admin.hgetall(f"lockyard:{{{p}|counter}}:d:ns:acme:counter:c") == {
            "v": "2",
            "n": "1",
        }
        assert admin.get(f"lockyard:{{{p}|lock:job}}:lease") == guard.owner
        assert admin.hgetall(f"lockyard:{{{p}|lock:job}}:fence") == {"e": "0", "c": "1"}
    assert guard.fencing_token == 1  # epoch 0 on a single server
    await guard.release()


def test_the_backend_never_uses_keys() -> None:
    paths = sorted((ROOT / "library/lockyard/backends/redis").glob("*.py"))
    assert {path.name for path in paths} >= {"scripts.py", "store.py", "locks.py"}
    for path in paths:
        source = path.read_text()
        assert not re.search(r"""['"]KEYS['"]|\.keys\(\s*['"]""", source), path


async def test_scans_drop_members_of_expired_keys(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    p = ly.prefix
    await ly.store.set("ns:acme:silence:gone", "x", ttl=0.05)
    await ly.store.set("ns:acme:silence:kept", "y")
    await asyncio.sleep(0.1)
    index = f"lockyard:{{{p}|silence}}:i"
    with redis_server.admin() as admin:
        assert admin.zcard(index) == 2  # Redis expired the data; the member is still there
    assert await ly.store.scan_keys("ns", "acme", "silence") == [("ns:acme:silence:kept", "y")]
    with redis_server.admin() as admin:
        assert admin.zrange(index, 0, -1) == ["ns:acme:silence:kept"]
        assert admin.zcard(f"lockyard:{{{p}|silence}}:x") == 0


async def test_the_sweep_reclaims_members_nobody_scans(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    p = ly.prefix
    for i in range(1200):  # more than one sweep batch
        await ly.store.check_and_set(f"ns:t{i % 3}:history:h{i}", "v", ttl=0.05)
    await ly.store.set("ns:acme:history:permanent", "v")
    await ly.store.set("ns:acme:history:later", "v", ttl=60)
    # A key that expired and came back without a TTL keeps its index entry.
    await ly.store.set("ns:acme:history:reborn", "v", ttl=0.05)
    await asyncio.sleep(0.1)
    await ly.store.set("ns:acme:history:reborn", "again")
    backend = backend_of(ly)
    examined = await backend.sweep()
    assert examined >= 1201
    with redis_server.admin() as admin:
        assert set(admin.zrange(f"lockyard:{{{p}|history}}:i", 0, -1)) == {
            "ns:acme:history:permanent",
            "ns:acme:history:later",
            "ns:acme:history:reborn",
        }
        assert admin.zrange(f"lockyard:{{{p}|history}}:x", 0, -1) == ["ns:acme:history:later"]
    assert await backend.sweep() == 0


async def test_the_background_sweep_runs_by_itself(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RedisBackend, "sweep_interval_s", 0.1)
    prefix = unique_prefix()
    async with lockyard.connect(redis_server.url(prefix)) as ly:
        await ly.store.set("ns:acme:quota:q", "v", ttl=0.05)
        index = f"lockyard:{{{prefix}|quota}}:i"
        backend = backend_of(ly)
        with redis_server.admin() as admin:
            assert admin.zcard(index) == 1
            # No test hook: wait for the task's own sweeps (interval 0.1 s, jittered).
            for _ in range(100):
                await asyncio.sleep(0.05)
                if not admin.zcard(index):
                    break
            assert admin.zcard(index) == 0
        assert backend.sweep_interval_s == 0.1
        await ly.store.purge()


async def test_purge_removes_only_this_prefix(redis_server: RedisServer) -> None:
    mine, theirs = unique_prefix(), unique_prefix()
    async with (
        lockyard.connect(redis_server.url(mine)) as a,
        lockyard.connect(redis_server.url(theirs)) as b,
    ):
        for store in (a.store, b.store):
            await store.set("ns:acme:state:x", "v")
            await store.set("ns:acme:state:y", "v", ttl=60)
            await store.index_timeout("ns:acme:state:x", 1)
        guard = await a.locks.try_acquire("l", 30)
        assert guard is not None
        assert await a.store.purge() == 2
        assert await a.store.get("ns:acme:state:x") is None
        assert await a.locks.list_held() == []
        assert await b.store.get("ns:acme:state:x") == "v"
        assert await b.store.get_expired_timeouts(5) == ["ns:acme:state:x"]
        with redis_server.admin() as admin:
            assert not list(admin.scan_iter(match=glob_escape(f"lockyard:{{{mine}|") + "*"))
        assert await b.store.purge() == 2


async def test_list_held_reads_awkward_names(ly: lockyard.Connection) -> None:
    names = ["a}b", "x}:lease", "{tag}", "with:colons", "glob*?[]", "ünï"]
    guards = [await ly.locks.try_acquire(name, 30) for name in names]
    held = {info.name: info for info in await ly.locks.list_held()}
    assert set(held) == set(names)
    for guard in guards:
        assert guard is not None
        assert held[guard.name].owner == guard.owner
        assert held[guard.name].fencing_token == guard.fencing_token
        await guard.release()
    assert await ly.locks.list_held() == []


async def test_scripts_come_back_after_script_flush(
    ly: lockyard.Connection, redis_server: RedisServer
) -> None:
    with redis_server.admin() as admin:
        admin.script_flush()
    assert await ly.store.increment("ns:acme:counter:n", 1) == 1
    guard = await ly.locks.try_acquire("after-flush", 30)
    assert guard is not None
    with redis_server.admin() as admin:
        admin.script_flush()
    await guard.release()
    with redis_server.admin() as admin:
        admin.script_flush()
    again = await ly.locks.try_acquire("after-flush", 30)
    assert again is not None
    assert again.fencing_token == guard.fencing_token + 1
    await again.release()


async def test_a_stalled_server_gives_operation_timeout(redis_server: RedisServer) -> None:
    async with lockyard.connect(redis_server.url(unique_prefix()) + "&timeout=0.3") as ly:
        await ly.store.set("ns:acme:state:k", "v")
        with redis_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(OperationTimeoutError):
                await ly.store.get("ns:acme:state:k")
            assert time.monotonic() - started < 1.0
        finally:
            with redis_server.admin() as admin:
                admin.execute_command("CLIENT", "UNPAUSE")
        assert await ly.store.get("ns:acme:state:k") == "v"
        await ly.store.purge()


async def test_counters_accept_only_canonical_integers(ly: lockyard.Connection) -> None:
    """HINCRBY reads exactly the shared counter grammar (checked against redis-server)."""
    k = "ns:acme:counter:odd"
    for text in [
        "007",
        "+7",
        "+0",
        "00",
        " 7",
        "7\n",
        "-0",
        "1_000",
        str(2**63),
        str(-(2**63) - 1),
    ]:
        await ly.store.set(k, text)
        with pytest.raises(SerializationError, match="not a counter"):
            await ly.store.increment(k, 1 if text.startswith("-") else -1)
        assert await ly.store.get(k) == text
    for text, delta in [(str(2**63 - 1), -1), (str(-(2**63)), 1), ("0", 1)]:
        await ly.store.set(k, text)
        assert await ly.store.increment(k, delta) == int(text) + delta


async def test_pool_size_bounds_the_connections(redis_server: RedisServer) -> None:
    async with lockyard.connect(redis_server.url(unique_prefix()) + "&pool_size=3") as ly:
        counts = await asyncio.gather(*(ly.store.increment("ns:a:counter:c", 1) for _ in range(50)))
        assert sorted(counts) == list(range(1, 51))
        await ly.locks.acquire("signals-on", 5, timeout=1)  # opens the release subscription
        with redis_server.admin() as admin:
            clients = [c for c in admin.client_list() if c.get("name") == "lockyard"]
        # pool_size command connections plus the one release subscription (other tests'
        # connections are closed by now).
        assert len(clients) <= 3 + 1
        await ly.store.purge()


def test_fencing_token_layout() -> None:
    assert FENCING_EPOCH_SHIFT == 40
    assert (3 << FENCING_EPOCH_SHIFT | 1) > (2 << FENCING_EPOCH_SHIFT | 10**9)
