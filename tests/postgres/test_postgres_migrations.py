"""The versioned schema: idempotent, safe in parallel, required when ``migrate=false``."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import uuid

import asyncpg
import pytest

import lockyard
from lockyard.backends.postgres import migrate, schema_version, sql
from lockyard.cli.migrate import register, run_migrate
from lockyard.config import PostgresConfig, parse_url
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def fresh_schema() -> str:
    return f"mig_{uuid.uuid4().hex[:10]}"


def config_for(server: PostgresServer, schema: str, **params: str) -> PostgresConfig:
    config = parse_url(server.url(schema=schema, **params))
    assert isinstance(config, PostgresConfig)
    return config


async def versions(server: PostgresServer, schema: str) -> list[int]:
    connection = await asyncpg.connect(server.dsn())
    try:
        rows = await connection.fetch(f'SELECT version FROM "{schema}".schema_version')
        return sorted(row[0] for row in rows)
    finally:
        await connection.close()


async def test_migrate_creates_the_schema_and_is_idempotent(
    postgres_server: PostgresServer,
) -> None:
    schema = fresh_schema()
    config = config_for(postgres_server, schema)
    messages: list[str] = []
    assert await migrate(config, messages.append) == sql.LATEST_VERSION
    assert any("applying version 1" in m for m in messages)
    messages.clear()
    assert await migrate(config, messages.append) == sql.LATEST_VERSION
    assert messages == [f"schema {schema} is at version {sql.LATEST_VERSION}: up to date"]
    assert await versions(postgres_server, schema) == list(range(1, sql.LATEST_VERSION + 1))


async def test_concurrent_migrations_on_separate_connections_all_succeed(
    postgres_server: PostgresServer,
) -> None:
    schema = fresh_schema()
    config = config_for(postgres_server, schema)
    results = await asyncio.gather(*(migrate(config) for _ in range(6)))
    assert results == [sql.LATEST_VERSION] * 6
    assert await versions(postgres_server, schema) == list(range(1, sql.LATEST_VERSION + 1))


def test_two_migrating_processes_at_once_both_succeed(postgres_server: PostgresServer) -> None:
    schema = fresh_schema()
    url = postgres_server.url(schema=schema)
    script = (
        "import sys; from lockyard.cli.migrate import run_migrate; "
        "sys.exit(run_migrate(sys.argv[1]))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert f"done: schema {schema} is at version {sql.LATEST_VERSION}" in out
    assert postgres_server.password not in "".join(out + err for out, err in outputs)
    assert asyncio.run(versions(postgres_server, schema)) == list(range(1, sql.LATEST_VERSION + 1))


async def test_connect_migrates_by_default(postgres_server: PostgresServer) -> None:
    schema = fresh_schema()
    async with lockyard.connect(postgres_server.url(schema=schema)) as ly:
        await ly.store.set("ns:t:state:x", "v")
    connection = await asyncpg.connect(postgres_server.dsn())
    try:
        assert await schema_version(connection, schema) == sql.LATEST_VERSION
    finally:
        await connection.close()


async def test_migrate_false_without_a_schema_names_the_schema_and_the_command(
    postgres_server: PostgresServer,
) -> None:
    schema = fresh_schema()
    with pytest.raises(lockyard.ConfigError) as raised:
        await lockyard.connect(postgres_server.url(schema=schema, migrate="false"))
    message = str(raised.value)
    assert repr(schema) in message
    assert "lockyard migrate postgresql://" in message
    assert postgres_server.password not in message
    connection = await asyncpg.connect(postgres_server.dsn())
    try:
        assert await schema_version(connection, schema) == 0
    finally:
        await connection.close()


async def test_migrate_false_works_once_migrated(postgres_server: PostgresServer) -> None:
    schema = fresh_schema()
    await migrate(config_for(postgres_server, schema))
    async with lockyard.connect(postgres_server.url(schema=schema, migrate="false")) as ly:
        assert await ly.store.check_and_set("ns:t:dedup:x", "v")


def test_run_migrate_prints_progress_and_returns_zero(postgres_server: PostgresServer) -> None:
    schema = fresh_schema()
    out, err = io.StringIO(), io.StringIO()
    assert run_migrate(postgres_server.url(schema=schema), out, err) == 0
    text = out.getvalue()
    assert "connecting to postgresql://lockyard:***@" in text
    assert "applying version 1" in text
    assert f"done: schema {schema} is at version {sql.LATEST_VERSION}" in text
    assert postgres_server.password not in text
    assert err.getvalue() == ""


def test_run_migrate_errors_have_exit_codes(postgres_server: PostgresServer) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_migrate("postgresql://u:p@127.0.0.1:5432/db?bogus=1", out, err) == 2
    assert "bogus" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    bad_password = postgres_server.url(password="wrong", schema=fresh_schema())
    assert run_migrate(bad_password, out, err) == 1
    assert "failed" in err.getvalue()
    assert "wrong" not in out.getvalue() + err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert run_migrate("memory://", out, err) == 0
    assert "no schema to migrate" in out.getvalue()


def test_register_adds_the_migrate_subcommand(postgres_server: PostgresServer) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="lockyard")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["migrate", postgres_server.url(schema=fresh_schema())])
    assert args.handler(args) == 0
