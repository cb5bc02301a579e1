"""Pydantic models of every backend's settings: the single source of truth.

``lockyard.connect`` takes one of these (or a URL parsed into one), and the ``StateStore`` custom
resource's spec is generated from the same fields (credentials there become Secret references).
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, SecretStr

PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
HOSTNAME_PATTERN = r"^[A-Za-z0-9._:\[\]-]+$"
# botocore's own check of a region name (it raises InvalidRegionError past it).
AWS_REGION_PATTERN = r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
# What botocore can open: an http(s) URL with a host (or bracketed IPv6), an optional port and path.
ENDPOINT_URL_PATTERN = r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:[0-9]{1,5})?(/[^\s?#]*)?$"
#: What each pattern means in words, for error messages (a regex is no help to a reader).
PATTERN_MEANINGS = {
    PREFIX_PATTERN: "letters, digits, '.', '_' and '-', starting with a letter or digit",
    HOSTNAME_PATTERN: "a host name or IP address (letters, digits, '.', '-', ':', '[', ']')",
    AWS_REGION_PATTERN: "an AWS region name such as eu-west-1",
    ENDPOINT_URL_PATTERN: "an http:// or https:// URL with a host, such as http://127.0.0.1:8000",
}

Port = Annotated[int, Field(ge=1, le=65535, description="TCP port.")]
Hostname = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN, description="Host name or IP."),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CommonSettings(_Model):
    """Settings every backend shares."""

    prefix: str = Field(
        default="lockyard",
        min_length=1,
        max_length=128,
        pattern=PREFIX_PATTERN,
        description="Key prefix: stores with different prefixes on one server never meet.",
    )
    operation_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds one operation may take before OperationTimeoutError.",
    )


class MemoryConfig(CommonSettings):
    """In-process store: for tests and development, one process only."""

    backend: Literal["memory"] = "memory"


class RedisTLS(_Model):
    """TLS to Redis (``rediss://``)."""

    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: str | None = Field(default=None, description="CA bundle that signed the server.")
    cert_file: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(default=None, description="Client private key (mutual TLS).")
    verify: bool = Field(default=True, description="Verify the server certificate and name.")


class _RedisDatabase(CommonSettings):
    db: int = Field(default=0, ge=0, le=15, description="Redis logical database number.")


class _RedisClient(CommonSettings):
    """What every Redis deployment shares: credentials, TLS, the pool, replica confirmation."""

    username: str | None = Field(default=None, description="ACL user name.")
    password: SecretStr | None = Field(default=None, description="Password (AUTH).")
    tls: RedisTLS = Field(default_factory=RedisTLS)
    pool_size: int = Field(default=16, ge=1, le=1024, description="Connections in the pool.")
    wait_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Replicas that must confirm a lock acquisition (WAIT) before it returns.",
    )


# Bases in this order keep ``db`` first among the fields, as before the split (the CRD's order).
class _RedisCommon(_RedisClient, _RedisDatabase):
    """One Redis server or a Sentinel-found master: the client settings and a database."""


class RedisConfig(_RedisCommon):
    """One Redis server."""

    backend: Literal["redis"] = "redis"
    host: Hostname = "localhost"
    port: Port = 6379


class SentinelAddress(_Model):
    host: Hostname
    port: Port = 26379


class RedisSentinelConfig(_RedisCommon):
    """Redis behind Sentinel: the master is discovered, and re-discovered after a failover."""

    backend: Literal["redis-sentinel"] = "redis-sentinel"
    sentinels: list[SentinelAddress] = Field(min_length=1, description="Sentinel addresses.")
    master: str = Field(min_length=1, max_length=128, description="Sentinel's master name.")
    sentinel_username: str | None = Field(default=None, description="ACL user for Sentinels.")
    sentinel_password: SecretStr | None = Field(default=None, description="Sentinel password.")


class ClusterNodeAddress(_Model):
    host: Hostname
    port: Port = 6379


class RedisClusterConfig(_RedisClient):
    """Redis Cluster: the slot map is read from the seed nodes, and followed as slots move."""

    backend: Literal["redis-cluster"] = "redis-cluster"
    nodes: list[ClusterNodeAddress] = Field(
        min_length=1, description="Seed nodes: any reachable node of the cluster will do."
    )


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresConfig(CommonSettings):
    """PostgreSQL through asyncpg."""

    backend: Literal["postgresql"] = "postgresql"
    host: Hostname = "localhost"
    port: Port = 5432
    database: str = Field(
        default="postgres", min_length=1, max_length=63, description="Database name."
    )
    user: str = Field(
        default="postgres", min_length=1, max_length=63, description="User to log in as."
    )
    password: SecretStr | None = None
    schema_name: str = Field(
        default="lockyard",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="Schema holding Lockyard's tables.",
    )
    sslmode: SslMode = Field(
        default="prefer", description="TLS mode, as libpq: verify-full checks CA and host name."
    )
    sslrootcert: str | None = Field(default=None, description="CA file for verify-ca/full.")
    sslcert: str | None = Field(default=None, description="Client certificate file.")
    sslkey: str | None = Field(default=None, description="Client key file.")
    pool_size: int = Field(default=10, ge=1, le=1024, description="Connections in the pool.")
    migrate: bool = Field(default=True, description="Create or upgrade the schema on connect.")


class DynamoDBConfig(CommonSettings):
    """DynamoDB through aioboto3 (credentials from the standard AWS chain unless given)."""

    backend: Literal["dynamodb"] = "dynamodb"
    table: str = Field(
        min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$", description="Table name."
    )
    region: str = Field(
        default="us-east-1",
        min_length=1,
        max_length=63,
        pattern=AWS_REGION_PATTERN,
        description="AWS region, such as eu-west-1.",
    )
    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=ENDPOINT_URL_PATTERN,
        description="A DynamoDB-compatible endpoint: http(s)://host[:port][/path].",
    )
    create_table: bool = Field(default=False, description="Create the table if it is missing.")
    access_key_id: str | None = Field(default=None, description="Overrides the AWS chain.")
    secret_access_key: SecretStr | None = Field(default=None, description="Goes with the key id.")
    pool_size: int = Field(default=32, ge=1, le=1024, description="HTTP connections.")


BackendConfig: TypeAlias = Annotated[
    MemoryConfig
    | RedisConfig
    | RedisSentinelConfig
    | RedisClusterConfig
    | PostgresConfig
    | DynamoDBConfig,
    Field(discriminator="backend"),
]
