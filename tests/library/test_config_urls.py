"""Connection URLs parse into the config models and back, with errors that name the fix."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.config import (
    DynamoDBConfig,
    MemoryConfig,
    PostgresConfig,
    RedisConfig,
    RedisSentinelConfig,
    parse_url,
    redact,
    to_url,
)
from lockyard.errors import ConfigError

ROUND_TRIPS = [
    "memory://?prefix=p1",
    "redis://localhost:6379/0?prefix=lockyard",
    "rediss://alice:s%40cret@cache.example:6380/2?prefix=orders&tls_ca_file=%2Fca.pem",
    "redis+sentinel://u:pw@s1:26379,s2:26380/mymaster/1?prefix=p",
    "postgresql://app:pw@db:5433/state?prefix=p&schema=ly&sslmode=verify-full",
    "dynamodb://locks?prefix=p&region=eu-west-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A5000",
]


@pytest.mark.parametrize("url", ROUND_TRIPS)
def test_urls_round_trip_through_the_models(url: str) -> None:
    config = parse_url(url)
    assert parse_url(to_url(config)) == config


def test_each_scheme_gives_its_model() -> None:
    assert isinstance(parse_url("memory://"), MemoryConfig)
    redis = parse_url("rediss://alice:pw@h:1/3?prefix=x")
    assert isinstance(redis, RedisConfig)
    assert (redis.host, redis.port, redis.db, redis.username, redis.tls.enabled) == (
        "h",
        1,
        3,
        "alice",
        True,
    )
    assert redis.password is not None
    assert redis.password.get_secret_value() == "pw"
    sentinel = parse_url("redis+sentinel://a:1,b/m")
    assert isinstance(sentinel, RedisSentinelConfig)
    assert [(s.host, s.port) for s in sentinel.sentinels] == [("a", 1), ("b", 26379)]
    assert sentinel.master == "m"
    pg = parse_url("postgresql://u:p@h/db?schema=s&migrate=false")
    assert isinstance(pg, PostgresConfig)
    assert (pg.database, pg.schema_name, pg.migrate, pg.port) == ("db", "s", False, 5432)
    dynamo = parse_url("dynamodb://tbl?create_table=true")
    assert isinstance(dynamo, DynamoDBConfig)
    assert dynamo.create_table


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nohost", "no scheme"),
        ("mongodb://x", "unknown URL scheme"),
        ("redis://h:notaport/0", "port"),
        ("redis://h/x", "database"),
        ("redis://h/0?colour=blue", "colour"),
        ("redis+sentinel://h:1", "master name"),
        ("postgresql://h/db?sslmode=sometimes", "sslmode"),
        ("memory://?prefix=has space", "prefix"),
        ("memory://?timeout=0", "operation_timeout"),
        ("dynamodb://x", "table"),
        ("postgresql://h/db?migrate=maybe", "migrate"),
        ("memory://?prefix=-x", "prefix: must be letters, digits"),
        ("dynamodb://tbl?region=eu%20west", "region: must be an AWS region name"),
        ("dynamodb://tbl?endpoint_url=localhost:8000", "endpoint_url: must be an http"),
        ("dynamodb://tbl?endpoint_url=ftp://h", "endpoint_url: must be an http"),
        ("dynamodb://tbl?endpoint_url=http://[::1", "endpoint_url: must be an http"),
    ],
)
def test_bad_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(url)


def test_good_endpoints_and_regions_pass() -> None:
    for endpoint in [
        "http://127.0.0.1:8000",
        "https://dynamodb.eu-west-1.amazonaws.com",
        "http://[::1]:8000/",
        "http://dynamo.ns.svc.cluster.local:8000/base",
    ]:
        config = parse_url(f"dynamodb://tbl?endpoint_url={endpoint}&region=eu-west-1")
        assert isinstance(config, DynamoDBConfig)
        assert (config.endpoint_url, config.region) == (endpoint, "eu-west-1")


def test_redact_hides_passwords() -> None:
    assert redact("redis://u:topsecret@h:1/0") == "redis://u:***@h:1/0"
    assert "topsecret" not in to_url(parse_url("redis://u:topsecret@h:1/0"), with_password=False)
    assert "topsecret" not in repr(parse_url("postgresql://u:topsecret@h/db"))


async def test_connect_accepts_urls_models_and_mappings() -> None:
    async with lockyard.connect(MemoryConfig(prefix="a")) as a:
        assert a.backend == "memory"
        assert a.prefix == "a"
    b = await lockyard.connect({"backend": "memory", "prefix": "b"})
    assert b.guarantees.ttl_precision == "1 ms"
    await b.close()
    await b.close()
    assert b.closed


async def test_connect_rejects_what_it_cannot_use() -> None:
    with pytest.raises(ConfigError, match="URL"):
        await lockyard.connect(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend"):
        await lockyard.connect({"backend": "etcd"})
