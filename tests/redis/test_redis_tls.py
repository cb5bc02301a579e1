"""``rediss://`` end to end against a TLS-only server signed by a throw-away test CA."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

import lockyard
import lockyard.sync
from lockyard import BackendConnectionError, OperationTimeoutError
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisServer, TLSFiles

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def mutual_tls_server(
    redis_tls: TLSFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A TLS server that also demands a client certificate."""
    folder: Path = tmp_path_factory.mktemp("redis-mtls")
    with RedisServer(folder, tls=redis_tls, tls_auth_clients=True) as server:
        yield server


@pytest.fixture
def own_tls_server(redis_tls: TLSFiles, tmp_path: Path) -> Iterator[RedisServer]:
    """A TLS server only this test uses (it may freeze it)."""
    with RedisServer(tmp_path / "redis-tls", tls=redis_tls) as server:
        yield server


async def test_rediss_with_the_ca_file_works_end_to_end(redis_tls_server: RedisServer) -> None:
    url = redis_tls_server.url(unique_prefix())
    assert url.startswith("rediss://")
    assert "tls_ca_file=" in url
    async with lockyard.connect(url) as ly:
        assert ly.backend == "redis"
        assert await ly.store.check_and_set("ns:acme:dedup:m", "seen", ttl=30)
        assert await ly.store.increment("ns:acme:counter:c", 3) == 3
        assert await ly.store.scan_keys_by_kind("counter") == [("ns:acme:counter:c", "3")]
        holder = await ly.locks.acquire("tls-lock", 30, timeout=1)

        async def release_soon() -> None:
            await asyncio.sleep(0.1)
            await holder.release()

        task = asyncio.create_task(release_soon())
        waiter = await ly.locks.acquire("tls-lock", 5, timeout=5)  # woken over TLS pub/sub
        await task
        assert waiter.fencing_token == holder.fencing_token + 1
        await waiter.release()
        await ly.store.purge()


async def test_an_unknown_ca_is_a_connection_error(redis_tls_server: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{redis_tls_server.port}/0?prefix={unique_prefix()}&timeout=2"
    with pytest.raises(BackendConnectionError) as raised:
        await lockyard.connect(url)
    # The TLS error stays in the chain: the operator reports TLSFailed from it, not an
    # unreachable server.
    chain: list[BaseException] = []
    link: BaseException | None = raised.value
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    assert any(isinstance(link, ssl.SSLError) for link in chain), chain


async def test_verification_can_be_turned_off(redis_tls_server: RedisServer) -> None:
    query = urlencode({"prefix": unique_prefix(), "tls_verify": "false"})
    async with lockyard.connect(f"rediss://127.0.0.1:{redis_tls_server.port}/0?{query}") as ly:
        assert await ly.store.get("ns:acme:state:none") is None


async def test_plain_redis_to_a_tls_port_fails_fast(redis_tls_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_tls_server.port}/0?prefix={unique_prefix()}&timeout=2"
    with pytest.raises(BackendConnectionError):
        await lockyard.connect(url)


async def test_mutual_tls_needs_the_client_certificate(
    mutual_tls_server: RedisServer, redis_tls: TLSFiles
) -> None:
    with pytest.raises(BackendConnectionError):
        await lockyard.connect(mutual_tls_server.url(unique_prefix(), timeout="2"))
    url = mutual_tls_server.url(
        unique_prefix(),
        tls_cert_file=redis_tls.client_cert_file,
        tls_key_file=redis_tls.client_key_file,
    )
    async with lockyard.connect(url) as ly:
        guard = await ly.locks.try_acquire("mtls", 5)
        assert guard is not None
        await guard.release()


def test_blocking_calls_in_their_thread_speak_tls_and_keep_the_timeout(
    redis_tls_server: RedisServer,
) -> None:
    """lockyard.sync's direct lane opens its own TLS socket per thread (lockyard.sync.lane)."""
    url = redis_tls_server.url(unique_prefix(), operation_timeout="0.5")
    with lockyard.sync.connect(url) as ly:
        ly.store.set("ns:acme:state:tls", "v")
        assert ly.store.get("ns:acme:state:tls") == "v"
        guard = ly.locks.acquire("tls-sync", 30, timeout=1)
        assert guard.is_held()
        guard.release()
        with redis_tls_server.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            try:
                with pytest.raises(OperationTimeoutError, match=r"operation timeout of 0\.5s"):
                    ly.store.get("ns:acme:state:tls")
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
        assert ly.store.get("ns:acme:state:tls") == "v"
        ly.store.purge()


@pytest.mark.parametrize("server", ["answering", "frozen"])
def test_a_handle_closed_as_its_loop_ends_leaves_no_socket_open(
    own_tls_server: RedisServer, server: str
) -> None:
    """A TLS socket closes only once the server answered its close_notify, a round trip after
    ``close()``: the handle waits for that (and drops the socket of a server that does not
    answer), so an application whose loop ends right after closing leaves no socket open
    (a ResourceWarning wherever it is collected, as CI once saw in another test)."""
    url = own_tls_server.url(unique_prefix(), timeout="2")

    async def use_and_close() -> float:
        ly = await lockyard.connect(url)
        await ly.store.set("ns:acme:state:tls", "v")
        if server == "frozen":
            own_tls_server.freeze()
        started = time.perf_counter()
        await ly.close()
        return time.perf_counter() - started

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = asyncio.new_event_loop()
        try:
            closing = loop.run_until_complete(use_and_close())
        finally:
            loop.close()  # at once: no loop round runs after the handle's close
            own_tls_server.thaw()
        del loop
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    # A frozen server costs the close its grace (autopipeline.CLOSE_GRACE), not a timeout.
    assert closing < 2
