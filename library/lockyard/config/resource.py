"""The ``StateStore`` custom resource (``lockyard.dev/v1alpha1``) as pydantic models.

The spec is derived from the backend settings models in :mod:`lockyard.config.backends`, so a
setting is declared once: each backend section (``memory``, ``redis``, ``redisSentinel``,
``redisCluster``, ``postgresql``, ``dynamodb``) copies the fields, types, bounds, defaults and
descriptions of its config model, with three changes:

- names are camelCase (``poolSize``), as Kubernetes APIs spell them;
- credentials (every ``SecretStr`` field, and the AWS key id) and client files (TLS CA,
  certificate and key) become references to a key of a Secret in the store's namespace, named
  ``<field>SecretRef`` (``passwordSecretRef``, ``caSecretRef``): a secret never sits in the spec;
- the settings every backend shares (prefix, operation timeout) move to the top of the spec.

Exactly one backend section is set. Pydantic enforces it here; the generated CRD carries the
same rule as CEL (a structural schema cannot express ``oneOf``), with :data:`EXACTLY_ONE_MESSAGE`.

:meth:`StateStoreSpec.to_config` turns a spec plus the values of its Secret references back into
the config model ``lockyard.connect`` takes. The operator's CRD generator
(``lockyard_operator.crd``) renders these models as the CRD's schema.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

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
from lockyard.config.urls import validate_config

# The resource's names live in the leaf lockyard.identity (the CLI reads them without
# pydantic); re-exported here for the CRD generator and the operator.
from lockyard.identity import API_GROUP as API_GROUP
from lockyard.identity import API_VERSION as API_VERSION
from lockyard.identity import CRD_NAME as CRD_NAME
from lockyard.identity import KIND as KIND
from lockyard.identity import PLURAL as PLURAL
from lockyard.identity import SHORT_NAMES as SHORT_NAMES
from lockyard.identity import SINGULAR as SINGULAR

#: The spec's backend sections, by their (camelCase) spec name.
BACKEND_MEMBERS = ("memory", "redis", "redisSentinel", "redisCluster", "postgresql", "dynamodb")
EXACTLY_ONE_MESSAGE = f"exactly one of {', '.join(BACKEND_MEMBERS)} must be set"

#: Suffix of every field holding a Secret reference (snake_case; ``...SecretRef`` in the CR).
SECRET_REF_SUFFIX = "_secret_ref"

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

#: Settings every backend shares: the top of the spec holds them, not the backend sections.
_COMMON_FIELDS = frozenset({"backend", *CommonSettings.model_fields})
#: Plain-string settings that are still credentials (the AWS key id lives beside its secret).
_CREDENTIAL_FIELDS = frozenset({"access_key_id"})
#: Settings naming a file on the client: in a resource they come from a Secret's key.
_FILE_FIELDS = frozenset({"ca_file", "cert_file", "key_file", "sslrootcert", "sslcert", "sslkey"})

DEFAULT_PROBE_INTERVAL_S = 10
DEFAULT_LOCK_TTL_S = 30.0


class ResourceModel(BaseModel):
    """Base of the resource's models: camelCase names, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, alias_generator=to_camel
    )


class SecretKeyRef(ResourceModel):
    """A key of a Secret in the StateStore's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret (in the StateStore's namespace).",
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret's data.",
    )

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


@dataclass(frozen=True, slots=True)
class SecretField:
    """How one ``...SecretRef`` field of a spec section maps onto its config field."""

    config_name: str
    kind: Literal["value", "file"]


def _is_secret_type(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


class DerivedSpec(ResourceModel):
    """A spec section whose fields are copied from a ``lockyard.config`` model.

    A subclass sets ``derived_from``; its fields are then made, in the source model's order,
    before pydantic builds the class (fields the subclass declares itself win).
    """

    derived_from: ClassVar[type[BaseModel]]
    #: spec field name -> how it maps onto the config model (filled per subclass)
    secret_fields: ClassVar[Mapping[str, SecretField]] = {}
    #: config model -> the spec section derived from it, for nested models (TLS, sentinels)
    _derived: ClassVar[dict[type[BaseModel], type[DerivedSpec]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        source = cls.__dict__.get("derived_from")
        if source is not None:
            declared = dict(inspect.get_annotations(cls))
            annotations: dict[str, Any] = {}
            secret_fields: dict[str, SecretField] = {}
            for name, info in source.model_fields.items():
                if name in _COMMON_FIELDS:
                    continue
                spec_name, annotation, field = _derive_field(name, info)
                if spec_name != name:
                    kind: Literal["value", "file"] = "file" if name in _FILE_FIELDS else "value"
                    secret_fields[spec_name] = SecretField(name, kind)
                if spec_name not in declared:
                    annotations[spec_name] = annotation
                    setattr(cls, spec_name, field)
            cls.__annotations__ = annotations | declared
            cls.secret_fields = secret_fields
            DerivedSpec._derived[source] = cls
        super().__init_subclass__(**kwargs)

    def to_config_data(
        self,
        secret_value: Callable[[SecretKeyRef], str],
        secret_file: Callable[[SecretKeyRef], str],
    ) -> dict[str, Any]:
        """The config model's fields (snake_case), Secret references replaced by their values.

        ``secret_value`` returns the text of a referenced key; ``secret_file`` returns the path
        of a file holding it (for settings that name a client file).
        """
        data: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            mapped = self.secret_fields.get(name)
            if mapped is not None:
                if value is not None:
                    resolve = secret_value if mapped.kind == "value" else secret_file
                    data[mapped.config_name] = resolve(value)
            elif isinstance(value, DerivedSpec):
                data[name] = value.to_config_data(secret_value, secret_file)
            elif isinstance(value, list):
                data[name] = [
                    item.to_config_data(secret_value, secret_file)
                    if isinstance(item, DerivedSpec)
                    else item
                    for item in value
                ]
            else:
                data[name] = value
        return data

    def secret_refs(self) -> Iterator[tuple[str, SecretKeyRef]]:
        """Every Secret reference in this section, with its config field's name."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            mapped = self.secret_fields.get(name)
            if mapped is not None and value is not None:
                yield mapped.config_name, value
            elif isinstance(value, DerivedSpec):
                yield from value.secret_refs()
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, DerivedSpec):
                        yield from item.secret_refs()


def _derive_field(name: str, info: FieldInfo) -> tuple[str, Any, Any]:
    """The spec's name, type and field for the config field ``name``."""
    annotation = info.annotation
    words = name.replace("_", " ")
    about = f" {info.description}" if info.description else ""
    if name in _FILE_FIELDS:
        spec_name = name.removesuffix("_file") + SECRET_REF_SUFFIX
        what = f"The content of the {words}, read from a key of a Secret.{about}"
        return spec_name, SecretKeyRef | None, Field(default=None, description=what)
    if _is_secret_type(annotation) or name in _CREDENTIAL_FIELDS:
        spec_name = name + SECRET_REF_SUFFIX
        what = f"The {words}, read from a key of a Secret.{about}"
        return spec_name, SecretKeyRef | None, Field(default=None, description=what)
    if isinstance(annotation, type) and annotation in DerivedSpec._derived:
        section = DerivedSpec._derived[annotation]
        return name, section, Field(default_factory=section, description=info.description)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args and args[0] in DerivedSpec._derived:
        return name, types.GenericAlias(list, (DerivedSpec._derived[args[0]],)), copy.copy(info)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise TypeError(f"{name}: derive a spec section from {annotation.__name__} first")
    return name, annotation, copy.copy(info)


# -- backend sections (nested sections first: the outer ones refer to them) -------------------


class RedisTLSSpec(DerivedSpec):
    """TLS to Redis; CA, client certificate and key come from Secrets."""

    derived_from = RedisTLS


class SentinelAddressSpec(DerivedSpec):
    """One Sentinel's address."""

    derived_from = SentinelAddress


class ClusterNodeAddressSpec(DerivedSpec):
    """One seed node of a Redis Cluster."""

    derived_from = ClusterNodeAddress


class MemorySpec(DerivedSpec):
    """In-process store inside the operator: for tests and development only."""

    derived_from = MemoryConfig


class RedisSpec(DerivedSpec):
    """One Redis server."""

    derived_from = RedisConfig


class RedisSentinelSpec(DerivedSpec):
    """Redis behind Sentinel: the master is discovered, and re-discovered after a failover."""

    derived_from = RedisSentinelConfig


class RedisClusterSpec(DerivedSpec):
    """Redis Cluster: the slot map is read from the seed nodes, and followed as slots move."""

    derived_from = RedisClusterConfig


class PostgresSpec(DerivedSpec):
    """PostgreSQL; the schema is created or upgraded on connect unless ``migrate`` is false."""

    derived_from = PostgresConfig


class DynamoDBSpec(DerivedSpec):
    """DynamoDB; credentials from the Secret references, else the operator's AWS chain."""

    derived_from = DynamoDBConfig


def _shared_field(name: str, **overrides: Any) -> Any:
    """A copy of the shared setting ``name`` of :class:`CommonSettings`, with ``overrides``."""
    field = copy.copy(CommonSettings.model_fields[name])
    for attribute, value in overrides.items():
        setattr(field, attribute, value)
    return field


class LockDefaults(ResourceModel):
    """Defaults for the store's locks, published in the binding for workloads."""

    default_ttl_seconds: float = Field(
        default=DEFAULT_LOCK_TTL_S,
        gt=0,
        le=86400,
        description="Lease of a lock when the workload gives none, in seconds.",
    )
    lease_mirroring: bool = Field(
        default=False,
        description="Mirror held locks as coordination.k8s.io Leases labelled "
        "lockyard.dev/store=<name>, so kubectl shows who holds what.",
    )


DeletionPolicy = Literal["Retain", "Delete"]


class StateStoreSpec(ResourceModel):
    """Where a store's state and locks live, and how the operator looks after it."""

    memory: MemorySpec | None = Field(default=None, description=MemorySpec.__doc__)
    redis: RedisSpec | None = Field(default=None, description=RedisSpec.__doc__)
    redis_sentinel: RedisSentinelSpec | None = Field(
        default=None, description=RedisSentinelSpec.__doc__
    )
    redis_cluster: RedisClusterSpec | None = Field(
        default=None, description=RedisClusterSpec.__doc__
    )
    postgresql: PostgresSpec | None = Field(default=None, description=PostgresSpec.__doc__)
    dynamodb: DynamoDBSpec | None = Field(default=None, description=DynamoDBSpec.__doc__)
    prefix: str | None = _shared_field(
        "prefix",
        default=None,
        description="Key prefix: stores with different prefixes on one server never meet. "
        "Default: <namespace>.<name>, so two StateStores never collide.",
    )
    operation_timeout_seconds: float = _shared_field("operation_timeout")
    locks: LockDefaults = Field(default_factory=LockDefaults, description=LockDefaults.__doc__)
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description="On deletion of the StateStore: Retain keeps the data; Delete purges "
        "every key, index entry and lock under the store's prefix (and nothing else).",
    )
    probe_interval_seconds: int = Field(
        default=DEFAULT_PROBE_INTERVAL_S,
        ge=1,
        le=3600,
        description="Seconds between the operator's health probes of the backend.",
    )

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> StateStoreSpec:
        if len([member for member in self._members() if member[1] is not None]) != 1:
            raise ValueError(EXACTLY_ONE_MESSAGE)
        return self

    def _members(self) -> list[tuple[str, DerivedSpec | None]]:
        return [
            ("memory", self.memory),
            ("redis", self.redis),
            ("redisSentinel", self.redis_sentinel),
            ("redisCluster", self.redis_cluster),
            ("postgresql", self.postgresql),
            ("dynamodb", self.dynamodb),
        ]

    @property
    def section(self) -> DerivedSpec:
        """The one backend section that is set."""
        return next(section for _, section in self._members() if section is not None)

    @property
    def member(self) -> str:
        """The spec name of the backend section that is set (``redisSentinel``, ...)."""
        return next(name for name, section in self._members() if section is not None)

    @property
    def backend(self) -> str:
        """The backend's name as ``lockyard.connect`` knows it (``redis-sentinel``, ...)."""
        default: str = type(self.section).derived_from.model_fields["backend"].default
        return default

    def effective_prefix(self, namespace: str, name: str) -> str:
        """The prefix set in the spec, or one derived from the StateStore's namespace and name."""
        return self.prefix or default_prefix(namespace, name)

    def secret_refs(self) -> list[tuple[str, SecretKeyRef]]:
        """Every Secret reference of the backend section, with its config field's name."""
        return list(self.section.secret_refs())

    def to_config(
        self,
        *,
        namespace: str,
        name: str,
        secret_value: Callable[[SecretKeyRef], str],
        secret_file: Callable[[SecretKeyRef], str],
    ) -> BackendConfig:
        """The config for ``lockyard.connect``; ``ConfigError`` names what is invalid."""
        data = self.section.to_config_data(secret_value, secret_file)
        data |= {
            "backend": self.backend,
            "prefix": self.effective_prefix(namespace, name),
            "operation_timeout": self.operation_timeout_seconds,
        }
        return validate_config(data)


def default_prefix(namespace: str, name: str) -> str:
    """``<namespace>.<name>``: unique per StateStore, since a namespace never holds a dot.

    Too long a result keeps its start and ends in a hash of the whole, so it stays unique.
    """
    prefix = f"{namespace}.{name}"
    limit = CommonSettings.model_fields["prefix"].metadata
    max_length = next((m.max_length for m in limit if hasattr(m, "max_length")), 128)
    if len(prefix) <= max_length:
        return prefix
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:12]
    return f"{prefix[: max_length - 13]}-{digest}"


def referenced_secrets(spec: Mapping[str, Any]) -> set[str]:
    """Names of the Secrets a raw (camelCase, possibly invalid) spec refers to.

    Lenient on purpose: the operator indexes Secrets of specs it cannot parse too, so fixing a
    Secret re-checks them.
    """
    camel_suffix = to_camel("x" + SECRET_REF_SUFFIX)[1:]
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if (
                    isinstance(key, str)
                    and key.endswith(camel_suffix)
                    and isinstance(value, Mapping)
                    and isinstance(value.get("name"), str)
                ):
                    names.add(value["name"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec)
    return names


# -- status ----------------------------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ResourceModel):
    """One aspect of the store's state, as the Kubernetes API conventions shape conditions."""

    type: str = Field(
        min_length=1, max_length=316, description="Ready, BackendReachable, SecretsResolved..."
    )
    status: ConditionStatus
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase cause, for machines.",
    )
    message: str = Field(default="", max_length=32768, description="Details, for people.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation this condition was computed from."
    )
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the status last changed (RFC 3339).",
    )


class BackendStatus(ResourceModel):
    """What the last probe saw of the backend."""

    name: str | None = Field(default=None, description="Backend: memory, redis, postgresql...")
    version: str | None = Field(default=None, description="The server's version.")
    latency_ms: float | None = Field(default=None, ge=0, description="Round trip of a ping.")


class GuaranteesStatus(ResourceModel):
    """The backend's lock-safety and precision promises (``lockyard.Guarantees``)."""

    mutual_exclusion: str
    failover_safety: str
    fencing: str
    ttl_precision: str
    clock: str
    fifo_waiters: bool = Field(
        default=False,
        description="Waiting acquirers are served in arrival order (a FIFO queue per lock).",
    )


class LocksStatus(ResourceModel):
    """The store's locks."""

    held: int | None = Field(default=None, ge=0, description="Locks held at the last probe.")


class BindingStatus(ResourceModel):
    """The Secret that workloads bind to (Service Binding for Kubernetes layout)."""

    name: str = Field(min_length=1, max_length=253, description="Name of the binding Secret.")


class StateStoreStatus(ResourceModel):
    """What the operator last observed; written only by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    prefix: str | None = Field(default=None, description="The key prefix in effect.")
    backend: BackendStatus | None = None
    guarantees: GuaranteesStatus | None = None
    locks: LocksStatus | None = None
    binding: BindingStatus | None = None
