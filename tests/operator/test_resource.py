"""The StateStore spec models: derived from the backend settings, one backend, Secret refs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from lockyard.config import (
    DynamoDBConfig,
    MemoryConfig,
    PostgresConfig,
    RedisConfig,
    RedisSentinelConfig,
)
from lockyard.config.backends import PREFIX_PATTERN
from lockyard.config.resource import (
    EXACTLY_ONE_MESSAGE,
    DynamoDBSpec,
    MemorySpec,
    PostgresSpec,
    RedisSentinelSpec,
    RedisSpec,
    SecretKeyRef,
    StateStoreSpec,
    default_prefix,
    referenced_secrets,
)

SECRETS = {("auth", "password"): "s3cret", ("tls", "ca.crt"): "-----CA-----"}


def value(ref: SecretKeyRef) -> str:
    return SECRETS[(ref.name, ref.key)]


def file(ref: SecretKeyRef) -> str:
    return f"/files/{ref.name}/{ref.key}"


def spec(data: dict[str, Any]) -> StateStoreSpec:
    return StateStoreSpec.model_validate(data)


@pytest.mark.parametrize(
    "data",
    [{}, {"memory": {}, "redis": {}}, {"prefix": "p"}, {"memory": None}],
    ids=["none", "two", "no-backend", "null"],
)
def test_exactly_one_backend(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=re.escape(EXACTLY_ONE_MESSAGE)):
        spec(data)


def test_sections_have_every_setting_of_their_config_model() -> None:
    pairs = [
        (MemorySpec, MemoryConfig),
        (RedisSpec, RedisConfig),
        (RedisSentinelSpec, RedisSentinelConfig),
        (PostgresSpec, PostgresConfig),
        (DynamoDBSpec, DynamoDBConfig),
    ]
    for section, config in pairs:
        mapped = {f.config_name for f in section.secret_fields.values()}
        plain = set(section.model_fields) - set(section.secret_fields)
        expected = set(config.model_fields) - {"backend", "prefix", "operation_timeout"}
        assert plain | mapped == expected, section.__name__


def test_names_are_camel_case_and_unknown_fields_are_rejected() -> None:
    parsed = spec({"redis": {"poolSize": 3, "waitReplicas": 1}, "deletionPolicy": "Delete"})
    assert parsed.redis is not None
    assert (parsed.redis.model_dump()["pool_size"], parsed.deletion_policy) == (3, "Delete")
    with pytest.raises(ValidationError, match="extra"):
        spec({"redis": {"password": "plain text"}})


def test_bounds_are_the_config_models_bounds() -> None:
    with pytest.raises(ValidationError, match=r"redis\.port"):
        spec({"redis": {"port": 70000}})
    with pytest.raises(ValidationError, match=r"probe_interval_seconds|probeIntervalSeconds"):
        spec({"memory": {}, "probeIntervalSeconds": 0})


def test_redis_config_with_secrets_and_files() -> None:
    parsed = spec(
        {
            "redis": {
                "host": "redis.example",
                "passwordSecretRef": {"name": "auth", "key": "password"},
                "tls": {"enabled": True, "caSecretRef": {"name": "tls", "key": "ca.crt"}},
            },
            "operationTimeoutSeconds": 2.5,
        }
    )
    config = parsed.to_config(namespace="team", name="orders", secret_value=value, secret_file=file)
    assert isinstance(config, RedisConfig)
    assert config.password == SecretStr("s3cret")
    assert config.tls.ca_file == "/files/tls/ca.crt"
    assert (config.host, config.prefix, config.operation_timeout) == (
        "redis.example",
        "team.orders",
        2.5,
    )
    assert parsed.backend == "redis"
    assert parsed.member == "redis"
    assert {(field, str(ref)) for field, ref in parsed.secret_refs()} == {
        ("password", "auth/password"),
        ("ca_file", "tls/ca.crt"),
    }


def test_every_backend_builds_its_config() -> None:
    ref = {"name": "auth", "key": "password"}
    cases: dict[str, tuple[dict[str, Any], type[Any]]] = {
        "memory": ({}, MemoryConfig),
        "redisSentinel": (
            {"master": "m", "sentinels": [{"host": "s1"}, {"host": "s2", "port": 1}]},
            RedisSentinelConfig,
        ),
        "postgresql": ({"passwordSecretRef": ref, "sslmode": "require"}, PostgresConfig),
        "dynamodb": (
            {"table": "tbl", "accessKeyIdSecretRef": ref, "secretAccessKeySecretRef": ref},
            DynamoDBConfig,
        ),
    }
    for member, (section, model) in cases.items():
        parsed = spec({member: section, "prefix": "explicit"})
        config = parsed.to_config(namespace="n", name="s", secret_value=value, secret_file=file)
        assert isinstance(config, model), member
        assert config.prefix == "explicit"
        assert parsed.member == member


def test_default_prefix_is_unique_per_store_and_always_valid() -> None:
    assert default_prefix("team-a", "orders") == "team-a.orders"
    # A namespace never holds a dot, so the first dot always ends it.
    assert default_prefix("a", "b-c.d") != default_prefix("a-b", "c.d")
    long_one, long_two = default_prefix("ns", "x" * 200), default_prefix("ns", "x" * 199 + "y")
    assert long_one != long_two
    for prefix in (long_one, long_two):
        assert len(prefix) <= 128
        assert re.match(PREFIX_PATTERN, prefix)


def test_referenced_secrets_reads_raw_and_invalid_specs() -> None:
    raw = {
        "redis": {
            "passwordSecretRef": {"name": "a", "key": "k"},
            "tls": {"caSecretRef": {"name": "b"}},
        },
        "postgresql": {"passwordSecretRef": {"name": "c", "key": "k"}},
        "notAField": [{"fooSecretRef": {"name": "d"}}],
    }
    assert referenced_secrets(raw) == {"a", "b", "c", "d"}
    assert referenced_secrets({}) == set()


def test_secret_key_refs_are_validated() -> None:
    with pytest.raises(ValidationError, match="name"):
        spec({"redis": {"passwordSecretRef": {"name": "Not_Valid", "key": "k"}}})
    with pytest.raises(ValidationError, match="key"):
        spec({"redis": {"passwordSecretRef": {"name": "ok"}}})
