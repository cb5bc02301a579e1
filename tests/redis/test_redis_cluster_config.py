"""``redis+cluster://`` URLs, the ``redisCluster`` spec section and the cluster's guarantees
(no server needed)."""

from __future__ import annotations

import pytest

from lockyard.backend import BUILTIN_BACKENDS
from lockyard.backends.redis.cluster_backend import CLUSTER_GUARANTEES
from lockyard.backends.redis.cluster_routing import CrossSlotError, command_slot
from lockyard.backends.redis.slots import key_slot
from lockyard.config import RedisClusterConfig, parse_url, to_url
from lockyard.config.resource import StateStoreSpec
from lockyard.errors import ConfigError


def test_a_cluster_url_names_seed_nodes_and_no_database() -> None:
    config = parse_url(
        "rediss+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001,redis-2/?prefix=shop&wait_replicas=1"
        "&tls_ca_file=/ca.pem&timeout=2"
    )
    assert isinstance(config, RedisClusterConfig)
    assert config.backend == "redis-cluster"
    assert [(n.host, n.port) for n in config.nodes] == [
        ("10.0.0.1", 7000),
        ("::1", 7001),
        ("redis-2", 6379),
    ]
    assert config.username == "app"
    assert config.password is not None
    assert config.password.get_secret_value() == "p@ss"
    assert config.tls.enabled
    assert config.tls.ca_file == "/ca.pem"
    assert (config.wait_replicas, config.operation_timeout, config.prefix) == (1, 2.0, "shop")
    assert parse_url(to_url(config)) == config
    assert "***" in to_url(config, with_password=False)
    assert BUILTIN_BACKENDS["redis-cluster"] == ("lockyard.backends.redis", "redis")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://h:7000/0?prefix=p", "no database"),
        ("redis+cluster://h:7000/?db=1", "unknown parameter"),
        ("redis+cluster:///?prefix=p", "nodes"),
        ("redis+cluster://h:port/", "must be a number"),
    ],
)
def test_bad_cluster_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_url(url)


def test_the_redis_cluster_spec_section_becomes_the_config() -> None:
    spec = StateStoreSpec.model_validate(
        {
            "redisCluster": {
                "nodes": [{"host": "redis-0.redis"}, {"host": "redis-1.redis", "port": 7000}],
                "passwordSecretRef": {"name": "auth", "key": "password"},
                "poolSize": 4,
            }
        }
    )
    assert spec.member == "redisCluster"
    assert spec.backend == "redis-cluster"
    config = spec.to_config(
        namespace="shop",
        name="catalog",
        secret_value=lambda ref: f"value-of-{ref}",
        secret_file=lambda ref: f"/files/{ref}",
    )
    assert isinstance(config, RedisClusterConfig)
    assert config.prefix == "shop.catalog"
    assert [(n.host, n.port) for n in config.nodes] == [
        ("redis-0.redis", 6379),
        ("redis-1.redis", 7000),
    ]
    assert config.password is not None
    assert config.password.get_secret_value() == "value-of-auth/password"
    assert config.pool_size == 4


def test_the_cluster_guarantees_name_the_failover_risk_and_the_epoch() -> None:
    assert "asynchronous" in CLUSTER_GUARANTEES.mutual_exclusion
    assert "wait_replicas" in CLUSTER_GUARANTEES.failover_safety
    assert "current epoch" in CLUSTER_GUARANTEES.fencing
    assert CLUSTER_GUARANTEES.fifo_waiters


def test_commands_are_routed_by_the_slot_of_their_keys() -> None:
    assert command_slot(("HGET", "lockyard:{p|state}:d:x", "v")) == key_slot("{p|state}")
    script = ("EVALSHA", "sha", 2, "lockyard:{p|lock:a}:lease", "lockyard:{p|lock:a}:fence", 1)
    assert command_slot(script) == key_slot("p|lock:a")
    assert command_slot(("EVALSHA", "sha", 0)) is None
    assert command_slot(("PING",)) is None
    with pytest.raises(CrossSlotError, match="different slots"):
        command_slot(("UNLINK", "{a}1", "{b}2"))
