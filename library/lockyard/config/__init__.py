"""Settings of every backend as pydantic models, and connection URLs to and from them."""

from lockyard.config.backends import (
    BackendConfig,
    ClusterNodeAddress,
    CommonSettings,
    DynamoDBConfig,
    MemoryConfig,
    PostgresConfig,
    RedisClusterConfig,
    RedisConfig,
    RedisSentinelConfig,
    RedisTLS,
    SentinelAddress,
)
from lockyard.config.urls import parse_url, redact, to_url, validate_config

__all__ = [
    "BackendConfig",
    "ClusterNodeAddress",
    "CommonSettings",
    "DynamoDBConfig",
    "MemoryConfig",
    "PostgresConfig",
    "RedisClusterConfig",
    "RedisConfig",
    "RedisSentinelConfig",
    "RedisTLS",
    "SentinelAddress",
    "parse_url",
    "redact",
    "to_url",
    "validate_config",
]
