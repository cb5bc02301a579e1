"""State keys: four segments, one canonical string form.

A key is ``namespace:tenant:kind:id``. The first three segments may not contain ``:``; the id may
(ids such as ``ns:t:act-1`` are common), so parsing splits at most three times.

Limits, the same on every backend (checked here, before any round trip): no segment may contain
NUL (PostgreSQL ``text`` cannot hold it) or a lone surrogate (not encodable as UTF-8), and the
canonical key is at most :data:`MAX_KEY_BYTES` bytes of UTF-8 (DynamoDB's limit on an index
range key, which holds the canonical key; PostgreSQL's btree entries stop near 2.7 KB).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from lockyard.errors import InvalidKeyError

#: The longest canonical key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024


class KeyKind(enum.StrEnum):
    """The built-in kinds. Any other non-empty string without ``:`` is a valid custom kind."""

    DEDUP = "dedup"
    COUNTER = "counter"
    LOCK = "lock"
    STATE = "state"
    HISTORY = "history"
    RATE_LIMIT = "rate_limit"
    EVENT_STATE = "event_state"
    EVENT_TIMEOUT = "event_timeout"
    GROUP = "group"
    PENDING_GROUPS = "pending_groups"
    ACTIVE_EVENTS = "active_events"
    APPROVAL = "approval"
    PENDING_APPROVALS = "pending_approvals"
    CHAIN = "chain"
    PENDING_CHAINS = "pending_chains"
    SCHEDULED_ACTION = "scheduled_action"
    PENDING_SCHEDULED = "pending_scheduled"
    RECURRING_ACTION = "recurring_action"
    PENDING_RECURRING = "pending_recurring"
    QUOTA = "quota"
    QUOTA_USAGE = "quota_usage"
    RETENTION = "retention"
    TEMPLATE = "template"
    TEMPLATE_PROFILE = "template_profile"
    CHAIN_DEF = "chain_def"
    SILENCE = "silence"
    ACTIVE_SILENCES = "active_silences"
    TIME_INTERVAL = "time_interval"
    BUS_TOPIC = "bus_topic"
    BUS_SUBSCRIPTION = "bus_subscription"
    BUS_SCHEMA = "bus_schema"
    BUS_AGENT = "bus_agent"
    BUS_CONVERSATION = "bus_conversation"
    BUS_APPROVAL = "bus_approval"
    PENDING_BUS_APPROVALS = "pending_bus_approvals"
    A2A_TASK = "a2a_task"
    A2A_MESSAGE_DEDUP = "a2a_message_dedup"
    BUS_AGENT_CARD = "bus_agent_card"
    A2A_TASK_PUSH_CONFIG = "a2a_task_push_config"
    A2A_PUSH_DLQ = "a2a_push_dlq"


def utf8_length(field: str, value: str) -> int:
    """Bytes of ``value`` in UTF-8; ``InvalidKeyError`` for NUL or a lone surrogate."""
    if "\x00" in value:
        raise InvalidKeyError(f"{field} must not contain NUL ('\\x00'): PostgreSQL cannot store it")
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f"{field} must be valid Unicode text: it contains a lone surrogate, "
            "which has no UTF-8 form"
        ) from None


def check_segment(field: str, value: object) -> str:
    """Return ``value`` if it is a valid namespace, tenant or kind segment, else raise."""
    if not isinstance(value, str):
        raise InvalidKeyError(f"key {field} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidKeyError(f"key {field} must not be empty")
    if ":" in value:
        raise InvalidKeyError(f"key {field} {value!r} must not contain ':' (only the id may)")
    utf8_length(f"key {field}", value)
    return value


def check_key_length(canonical: str) -> str:
    """``canonical`` if it has no NUL or lone surrogate and fits :data:`MAX_KEY_BYTES`."""
    size = utf8_length("key", canonical)
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"key {canonical[:40]!r}... is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}"
        )
    return canonical


@dataclass(frozen=True, slots=True)
class StateKey:
    """A validated key. ``str(key)`` is the canonical form every backend stores and returns."""

    namespace: str
    tenant: str
    kind: KeyKind | str
    id: str

    def __post_init__(self) -> None:
        check_segment("namespace", self.namespace)
        check_segment("tenant", self.tenant)
        check_segment("kind", str(self.kind) if isinstance(self.kind, KeyKind) else self.kind)
        if not isinstance(self.id, str):
            raise InvalidKeyError(f"key id must be a str, got {type(self.id).__name__}")
        if not self.id:
            raise InvalidKeyError("key id must not be empty")
        utf8_length("key id", self.id)
        check_key_length(str(self))

    def __str__(self) -> str:
        return f"{self.namespace}:{self.tenant}:{self.kind}:{self.id}"

    @property
    def canonical(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, canonical: str) -> StateKey:
        """Parse ``namespace:tenant:kind:id``; the id keeps any further colons."""
        if not isinstance(canonical, str):
            raise InvalidKeyError(
                f"a key must be a StateKey or str, got {type(canonical).__name__}"
            )
        parts = canonical.split(":", 3)
        if len(parts) != 4:
            raise InvalidKeyError(
                f"key {canonical!r} must have the form 'namespace:tenant:kind:id' "
                f"(found {len(parts)} segment(s))"
            )
        return cls(*parts)


KeyLike: TypeAlias = StateKey | str


def canonical_key(key: KeyLike) -> str:
    """The canonical string of ``key``, validated. Fast path for strings: one split."""
    if isinstance(key, StateKey):
        return str(key)
    if isinstance(key, str):
        parts = key.split(":", 3)
        if len(parts) == 4 and all(parts) and ":" not in parts[2]:
            return check_key_length(key)
    return str(StateKey.parse(key))


def kind_prefix(namespace: str, tenant: str, kind: KeyKind | str) -> str:
    """The literal prefix ``namespace:tenant:kind:`` that scans anchor on."""
    check_segment("namespace", namespace)
    check_segment("tenant", tenant)
    return f"{namespace}:{tenant}:{check_segment('kind', str(kind))}:"


def kind_of(canonical: str) -> str:
    """The kind segment of a canonical key."""
    return canonical.split(":", 3)[2]
