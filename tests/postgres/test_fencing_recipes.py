"""Fencing a resource outside Lockyard (lockyard.fencing), on the real PostgreSQL server: a
table whose rows keep the token that wrote them, and an HTTP service checking a token header.

In both, holder A's lock is broken and taken over by B; A, still running, writes late: the
resource refuses A's lower token and keeps B's write.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping

import asyncpg
import pytest
import pytest_asyncio

import lockyard
from lockyard import StaleFenceError
from lockyard.fencing import FENCING_TOKEN_HEADER, FencedTable, FenceGate, fencing_headers
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.asyncio

SCHEMA = "fencing_recipes"


@pytest_asyncio.fixture
async def accounts(raw: asyncpg.Connection) -> AsyncIterator[FencedTable]:
    table = f"accounts_{uuid.uuid4().hex[:8]}"
    await raw.execute(
        f"CREATE TABLE {table} (id text PRIMARY KEY, balance bigint NOT NULL, "
        "fence bigint NOT NULL)"
    )
    yield FencedTable(table, ["id"], ["balance"])
    await raw.execute(f"DROP TABLE {table}")


async def take_over(ly: lockyard.Connection, name: str) -> lockyard.LockGuard:
    """Break ``name``'s lock and acquire it again: the new holder's token is higher."""
    assert await ly.locks.break_lock(name)
    return await ly.locks.acquire(name, 30, timeout=1)


async def test_a_fenced_table_refuses_the_old_holder(
    ly: lockyard.Connection, raw: asyncpg.Connection, accounts: FencedTable
) -> None:
    a = await ly.locks.acquire("account-1", 30, timeout=1)
    await accounts.write(raw, a, ["acct-1"], [100])  # inserts the row
    await accounts.write(raw, a, ["acct-1"], [110])  # the same token writes again
    b = await take_over(ly, "account-1")
    assert b.fencing_token > a.fencing_token
    await accounts.write(raw, b, ["acct-1"], [200])
    with pytest.raises(StaleFenceError) as refused:
        await accounts.write(raw, a, ["acct-1"], [999])
    assert isinstance(refused.value, lockyard.LockLostError)
    with pytest.raises(StaleFenceError, match="does not exist"):
        await accounts.write(raw, a, ["acct-1"], [999], upsert=False)
    row = await raw.fetchrow(f"SELECT balance, fence FROM {accounts.table} WHERE id = 'acct-1'")
    assert (row["balance"], row["fence"]) == (200, b.fencing_token)
    await accounts.write(raw, b, ["acct-1"], [210], upsert=False)
    assert await raw.fetchval(f"SELECT balance FROM {accounts.table}") == 210
    await b.release()


async def test_concurrent_fenced_writers_leave_the_highest_token(
    ly: lockyard.Connection,
    raw: asyncpg.Connection,
    accounts: FencedTable,
    postgres_server: PostgresServer,
) -> None:
    """Four holders in turn (each breaking the last), all writing at once through a pool: every
    write of the newest lands, and the row ends with its token, whatever order the others'
    writes reached the table in (an older token never overwrites a newer one)."""
    guards = [await ly.locks.acquire("account-2", 30, timeout=1)]
    for _ in range(3):
        guards.append(await take_over(ly, "account-2"))
    pool = await asyncpg.create_pool(postgres_server.dsn(), min_size=4, max_size=4)
    try:
        landed: dict[int, int] = {}

        async def writer(guard: lockyard.LockGuard) -> None:
            count = 0
            for value in range(20):
                try:
                    await accounts.write(
                        pool, guard, ["acct-2"], [guard.fencing_token * 100 + value]
                    )
                    count += 1
                except StaleFenceError:
                    pass
            landed[guard.fencing_token] = count

        await asyncio.gather(*(writer(g) for g in guards))
    finally:
        await pool.close()
    newest = guards[-1].fencing_token
    row = await raw.fetchrow(f"SELECT balance, fence FROM {accounts.table} WHERE id = 'acct-2'")
    assert row["fence"] == newest
    assert row["balance"] // 100 == newest
    assert landed[newest] == 20
    await guards[-1].release()


class FencedService:
    """A tiny HTTP service over real loopback TCP: PUT /<resource> with a fencing token."""

    def __init__(self) -> None:
        self.gate = FenceGate()
        self.values: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FencedService:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode()
        _method, path, _ = request.split(" ", 2)
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        body = (await reader.readexactly(int(headers.get("Content-Length", "0")))).decode()
        resource = path.lstrip("/")
        try:
            self.gate.admit_headers(resource, headers)  # admit and write: no await between
            self.values[resource] = body
            status = "204 No Content"
        except StaleFenceError:
            status = "409 Conflict"
        except ValueError:
            status = "400 Bad Request"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


async def put(port: int, resource: str, body: str, headers: Mapping[str, str]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"PUT /{resource} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
    await writer.drain()
    status = int((await reader.readline()).decode().split(" ")[1])
    writer.close()
    await writer.wait_closed()
    return status


async def test_an_http_service_refuses_the_old_holders_token(ly: lockyard.Connection) -> None:
    async with FencedService() as service:
        a = await ly.locks.acquire("report", 30, timeout=1)
        headers = fencing_headers(a)
        assert headers[FENCING_TOKEN_HEADER] == str(a.fencing_token)
        assert await put(service.port, "report", "by-a", headers) == 204
        b = await take_over(ly, "report")
        assert await put(service.port, "report", "by-b", fencing_headers(b)) == 204
        assert await put(service.port, "report", "late-a", fencing_headers(a)) == 409
        assert await put(service.port, "report", "no-token", {}) == 400
        assert service.values == {"report": "by-b"}
        assert service.gate.highest("report") == b.fencing_token
        # Another resource has its own highest token.
        assert await put(service.port, "other", "by-a", fencing_headers(a)) == 204
        await b.release()


async def test_semaphore_permits_fence_a_table_too(
    ly: lockyard.Connection, raw: asyncpg.Connection, accounts: FencedTable
) -> None:
    first = await ly.semaphores.acquire("writers", 2, 30, timeout=1)
    second = await ly.semaphores.acquire("writers", 2, 30, timeout=1)
    await accounts.write(raw, first, ["acct-3"], [1])
    await accounts.write(raw, second, ["acct-3"], [2])
    with pytest.raises(StaleFenceError):
        await accounts.write(raw, first, ["acct-3"], [3])
    assert await raw.fetchval(f"SELECT balance FROM {accounts.table}") == 2
    await first.release()
    await second.release()
