"""TLS end to end: sslmode and certificates against a server with a test CA."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockyard
from lockyard.backends import postgres as pg
from lockyard.config import PostgresConfig, parse_url
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.tls import make_ca, make_client_certificate

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tls_server() -> Iterator[PostgresServer]:
    # 127.0.0.2 is not in the certificate: the host name check has something to refuse.
    with PostgresServer(tls=True, listen=("127.0.0.1", "127.0.0.2")) as server:
        yield server


@pytest.fixture(scope="module")
def ca_file(tls_server: PostgresServer) -> str:
    assert tls_server.ca is not None
    return str(tls_server.ca.cert_file)


def url(server: PostgresServer, host: str = "127.0.0.1", **params: str) -> str:
    return server.url(host=host, prefix=f"tls{uuid.uuid4().hex[:8]}", schema="tls", **params)


async def uses_tls(ly: lockyard.Connection) -> bool:
    backend = ly._backend
    assert isinstance(backend, pg.PostgresBackend)
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    in_tls: bool = await backend.pool.fetchval(query)
    return in_tls


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_verify_full_checks_the_ca_and_the_host_name(
    tls_server: PostgresServer, ca_file: str, host: str
) -> None:
    async with lockyard.connect(
        url(tls_server, host, sslmode="verify-full", sslrootcert=ca_file)
    ) as ly:
        assert await uses_tls(ly)
        await ly.store.set("ns:t:state:x", "secret")
        assert await ly.store.get("ns:t:state:x") == "secret"
        guard = await ly.locks.acquire("tls", 5, timeout=1)
        await guard.release()
        await ly.store.purge()


async def test_verify_full_refuses_a_host_name_not_in_the_certificate(
    tls_server: PostgresServer, ca_file: str
) -> None:
    with pytest.raises(lockyard.BackendConnectionError) as raised:
        await lockyard.connect(
            url(tls_server, "127.0.0.2", sslmode="verify-full", sslrootcert=ca_file)
        )
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)
    async with lockyard.connect(
        url(tls_server, "127.0.0.2", sslmode="verify-ca", sslrootcert=ca_file)
    ) as ly:
        assert await uses_tls(ly)


async def test_an_untrusted_ca_is_refused(tls_server: PostgresServer, tmp_path: Path) -> None:
    other = make_ca(tmp_path, "untrusted")
    for mode in ("verify-ca", "verify-full", "require"):
        with pytest.raises(lockyard.BackendConnectionError):
            await lockyard.connect(url(tls_server, sslmode=mode, sslrootcert=str(other.cert_file)))


async def test_require_without_a_root_certificate_encrypts_without_verifying(
    tls_server: PostgresServer,
) -> None:
    async with lockyard.connect(url(tls_server, sslmode="require")) as ly:
        assert await uses_tls(ly)


@pytest.mark.parametrize(("mode", "encrypted"), [("disable", False), ("prefer", True)])
async def test_disable_and_prefer(tls_server: PostgresServer, mode: str, encrypted: bool) -> None:
    async with lockyard.connect(url(tls_server, sslmode=mode)) as ly:
        assert await uses_tls(ly) is encrypted


async def test_a_missing_certificate_file_is_a_config_error(tls_server: PostgresServer) -> None:
    with pytest.raises(lockyard.ConfigError, match="certificate"):
        await lockyard.connect(
            url(tls_server, sslmode="verify-full", sslrootcert="/nonexistent/ca.crt")
        )


def test_ssl_settings_map_each_mode() -> None:
    def setting(**params: str) -> ssl.SSLContext | str | bool:
        config = parse_url(
            "postgresql://u:p@db:5432/x?" + "&".join(f"{k}={v}" for k, v in params.items())
        )
        assert isinstance(config, PostgresConfig)
        return pg.ssl_setting(config)

    assert setting(sslmode="disable") is False
    assert setting(sslmode="prefer") == "prefer"
    assert setting(sslmode="allow") == "allow"
    full = setting(sslmode="verify-full")
    assert isinstance(full, ssl.SSLContext)
    assert full.check_hostname
    assert full.verify_mode == ssl.CERT_REQUIRED
    ca = setting(sslmode="verify-ca")
    assert isinstance(ca, ssl.SSLContext)
    assert not ca.check_hostname
    assert ca.verify_mode == ssl.CERT_REQUIRED
    required = setting(sslmode="require")
    assert isinstance(required, ssl.SSLContext)
    assert required.verify_mode == ssl.CERT_NONE


async def test_a_client_certificate_is_presented(
    tls_server: PostgresServer, ca_file: str, tmp_path: Path
) -> None:
    assert tls_server.ca is not None
    cert, key = make_client_certificate(tls_server.ca, tmp_path, "lockyard-client")
    target = url(
        tls_server, sslmode="verify-full", sslrootcert=ca_file, sslcert=str(cert), sslkey=str(key)
    )
    async with lockyard.connect(target) as ly:
        backend = ly._backend
        assert isinstance(backend, pg.PostgresBackend)
        query = "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        assert await backend.pool.fetchval(query) == "/CN=lockyard-client"


def test_a_connect_cancelled_half_way_leaves_no_socket_open(
    tls_server: PostgresServer, ca_file: str
) -> None:
    """The LISTEN connection is cancelled mid-connect when a handle closes right after its first
    waiter started it. asyncpg alone then leaves the TLS socket to a graceful close that a
    loop ending soon after never finishes (a ResourceWarning in some later test)."""
    config = parse_url(url(tls_server, sslmode="verify-full", sslrootcert=ca_file))
    assert isinstance(config, PostgresConfig)
    kwargs = pg.connect_kwargs(config, "cancelled")

    async def connect_once() -> float:
        started = time.perf_counter()
        (await pg.connect(kwargs)).terminate()
        return time.perf_counter() - started

    async def cancel_after(delay: float) -> None:
        connecting = asyncio.create_task(pg.connect(kwargs))
        await asyncio.sleep(delay)
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            (await connecting).terminate()

    # Cancel at points spread over one whole connect (TCP, TLS handshake, authentication),
    # each in a loop of its own that ends right after, as a closing application's does.
    whole = max(asyncio.run(connect_once()) for _ in range(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(40):
            asyncio.run(cancel_after(whole * step / 40))
            gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
