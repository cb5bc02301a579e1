"""The probe's fresh login against real servers (no control plane): it fails, with the right
reason, where a connection authenticated earlier goes on working, and it leaves no connection
behind."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from pydantic import SecretStr

from lockyard.config import (
    DynamoDBConfig,
    PostgresConfig,
    RedisConfig,
    RedisSentinelConfig,
    RedisTLS,
    SentinelAddress,
)
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.process import free_port
from lockyard_dev.servers.redis import RedisSentinelSetup, RedisServer, make_test_tls
from lockyard_operator import reasons
from lockyard_operator.classify import classify
from lockyard_operator.fresh_login import LoginCheck, login_check


async def reason_of(check: LoginCheck) -> str:
    """The condition reason the check's failure maps to (``"ok"`` if it passed)."""
    try:
        await check.check()
    except Exception as exc:
        return classify(exc).reason
    return "ok"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer(password="first-4c1d", username="app") as server:
        yield server


@pytest.mark.redis
async def test_redis_password_changed_on_the_server(own_redis: RedisServer) -> None:
    config = RedisConfig(host="127.0.0.1", port=own_redis.port, password=SecretStr("first-4c1d"))
    check = login_check(config)
    kept = redis.asyncio.Redis(host="127.0.0.1", port=own_redis.port, password="first-4c1d")
    try:
        assert await reason_of(check) == "ok"
        assert await kept.ping()
        with own_redis.admin() as admin:
            admin.config_set("requirepass", "second-9e7f")
        # The issue in one line: the connection authenticated earlier still answers...
        assert await kept.ping()
        # ... while a new login with the same credentials is refused.
        assert await reason_of(check) == reasons.AUTHENTICATION_FAILED
        fixed = RedisConfig(
            host="127.0.0.1", port=own_redis.port, password=SecretStr("second-9e7f")
        )
        assert await reason_of(login_check(fixed)) == "ok"
    finally:
        await kept.aclose()


@pytest.mark.redis
async def test_redis_acl_user_removed_or_password_required(own_redis: RedisServer) -> None:
    as_user = RedisConfig(
        host="127.0.0.1", port=own_redis.port, username="app", password=SecretStr("first-4c1d")
    )
    assert await reason_of(login_check(as_user)) == "ok"
    with own_redis.admin() as admin:
        admin.acl_deluser("app")
    assert await reason_of(login_check(as_user)) == reasons.AUTHENTICATION_FAILED
    # No credentials at all: the server answers PING with NOAUTH.
    anonymous = RedisConfig(host="127.0.0.1", port=own_redis.port)
    assert await reason_of(login_check(anonymous)) == reasons.AUTHENTICATION_FAILED


@pytest.mark.redis
async def test_redis_tls_certificate_replaced(tmp_path: Path) -> None:
    first, second = make_test_tls(tmp_path / "first"), make_test_tls(tmp_path / "second")
    with RedisServer(tls=first) as server:
        config = RedisConfig(
            host="127.0.0.1", port=server.port, tls=RedisTLS(enabled=True, ca_file=first.ca_file)
        )
        assert await reason_of(login_check(config)) == "ok"
        with server.admin() as admin:
            admin.execute_command(
                "CONFIG", "SET", "tls-cert-file", second.cert_file, "tls-key-file", second.key_file
            )
        assert await reason_of(login_check(config)) == reasons.TLS_FAILED
        trusting = config.model_copy(update={"tls": RedisTLS(enabled=True, ca_file=second.ca_file)})
        assert await reason_of(login_check(trusting)) == "ok"


@pytest.mark.redis
async def test_redis_unreachable() -> None:
    config = RedisConfig(host="127.0.0.1", port=free_port(), operation_timeout=1)
    assert await reason_of(login_check(config)) == reasons.BACKEND_UNREACHABLE


@pytest.mark.redis
async def test_a_check_leaves_no_connection_behind(own_redis: RedisServer) -> None:
    config = RedisConfig(host="127.0.0.1", port=own_redis.port, password=SecretStr("first-4c1d"))
    check = login_check(config)
    with own_redis.admin() as admin:
        before = int(admin.info("clients")["connected_clients"])
        for _ in range(5):
            await check.check()
        after = int(admin.info("clients")["connected_clients"])
    assert after == before


@pytest.mark.sentinel
async def test_sentinel_asks_a_sentinel_then_logs_in_to_the_master() -> None:
    with RedisSentinelSetup(password="sentinel-7b2a", username="app") as setup:
        config = RedisSentinelConfig(
            # The first Sentinel listed is down: the next one answers.
            sentinels=[
                SentinelAddress(host="127.0.0.1", port=free_port()),
                *(SentinelAddress(host="127.0.0.1", port=s.port) for s in setup.sentinels),
            ],
            master="lockyard",
            username="app",
            password=SecretStr("sentinel-7b2a"),
            operation_timeout=2,
        )
        assert await reason_of(login_check(config)) == "ok"
        _, port = setup.master_address()
        with setup.server_on(port).admin() as admin:
            admin.acl_deluser("app")
        assert await reason_of(login_check(config)) == reasons.AUTHENTICATION_FAILED
        nowhere = config.model_copy(update={"master": "no-such-master"})
        assert await reason_of(login_check(nowhere)) == reasons.BACKEND_UNREACHABLE


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with PostgresServer(password="admin-51c0") as server:
        yield server


async def _admin(server: PostgresServer, *statements: str) -> None:
    connection = await asyncpg.connect(server.dsn())
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_postgres_password_login_and_pg_hba(own_postgres: PostgresServer) -> None:
    await _admin(own_postgres, "CREATE ROLE app LOGIN PASSWORD 'app-1d2e'")
    config = PostgresConfig(
        host="127.0.0.1",
        port=own_postgres.port or 0,
        user="app",
        password=SecretStr("app-1d2e"),
        database=own_postgres.database,
    )
    check = login_check(config)
    assert await reason_of(check) == "ok"

    await _admin(own_postgres, "ALTER ROLE app PASSWORD 'app-changed'")
    assert await reason_of(check) == reasons.AUTHENTICATION_FAILED
    await _admin(own_postgres, "ALTER ROLE app PASSWORD 'app-1d2e'", "ALTER ROLE app NOLOGIN")
    assert await reason_of(check) == reasons.AUTHENTICATION_FAILED
    await _admin(own_postgres, "ALTER ROLE app LOGIN")
    assert await reason_of(check) == "ok"

    hba = own_postgres.data_dir / "pg_hba.conf"
    original = await asyncio.to_thread(hba.read_text)
    await asyncio.to_thread(hba.write_text, "host all app 127.0.0.1/32 reject\n" + original)
    await _admin(own_postgres, "SELECT pg_reload_conf()")
    assert await reason_of(check) == reasons.AUTHENTICATION_FAILED

    connection = await asyncpg.connect(own_postgres.dsn())
    try:
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        assert await connection.fetchval(count, "lockyard-operator-probe") == 0
    finally:
        await connection.close()


async def _refused_as_shutting_down(server: PostgresServer, timeout: float = 30.0) -> None:
    """Wait until a login meets the server's own refusal (the signal arrives asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = await asyncpg.connect(server.dsn())
        except asyncpg.exceptions.CannotConnectNowError:
            return
        await connection.close()
        assert time.monotonic() < deadline, "the server never began to shut down"
        await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_postgres_shutting_down_then_stopped_is_unreachable(
    own_postgres: PostgresServer,
) -> None:
    """A restart is an outage, not a refusal: the operator's status must say so at each step."""
    check = login_check(
        PostgresConfig(
            host="127.0.0.1",
            port=own_postgres.port or 0,
            user=own_postgres.user,
            password=SecretStr(own_postgres.password),
            database=own_postgres.database,
        )
    )
    assert await reason_of(check) == "ok"
    session = await asyncpg.connect(own_postgres.dsn())  # keeps the smart shutdown waiting
    own_postgres.begin_smart_shutdown()
    try:
        await _refused_as_shutting_down(own_postgres)
        assert await reason_of(check) == reasons.BACKEND_UNREACHABLE
    finally:
        await session.close()
    own_postgres.stop()
    assert await reason_of(check) == reasons.BACKEND_UNREACHABLE


@pytest.mark.dynamodb
async def test_dynamodb_describe_table_and_a_stopped_endpoint() -> None:
    with MotoServer() as server:
        config = DynamoDBConfig(
            table="fresh-login",
            endpoint_url=server.endpoint_url,
            access_key_id="AKIDFRESH",
            secret_access_key=SecretStr("fresh-secret"),
            operation_timeout=2,
        )
        check = login_check(config)
        try:
            # No such table: the endpoint answered, with a refusal that is not about who asked.
            assert await reason_of(check) == reasons.BACKEND_REFUSED
            server.stop()
            assert await reason_of(check) == reasons.BACKEND_UNREACHABLE
        finally:
            await check.close()


@pytest.mark.postgres
async def test_postgres_server_certificate_replaced(tmp_path: Path) -> None:
    with PostgresServer(tls=True, password="admin-7d3c") as server:
        assert server.ca is not None
        config = PostgresConfig(
            host="127.0.0.1",
            port=server.port or 0,
            user=server.user,
            password=SecretStr("admin-7d3c"),
            database=server.database,
            sslmode="verify-full",
            sslrootcert=str(server.ca.cert_file),
        )
        assert await reason_of(login_check(config)) == "ok"
        other = make_test_tls(tmp_path / "other")
        # Copied over the files in place: the server's own user keeps owning them.
        for source, name in ((other.cert_file, "server.crt"), (other.key_file, "server.key")):
            await asyncio.to_thread(shutil.copyfile, source, server.data_dir / name)
        await _admin(server, "SELECT pg_reload_conf()")
        assert await reason_of(login_check(config)) == reasons.TLS_FAILED
