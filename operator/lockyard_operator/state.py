"""The vocabulary the reconciler's parts share: which store, what the operator holds for it,
and how a call ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lockyard.identity import API_GROUP, API_VERSION, KIND
from lockyard_operator import reasons
from lockyard_operator.connections import CachedConnection
from lockyard_operator.status import StatusBook


@dataclass(frozen=True, slots=True)
class StoreRef:
    """Which StateStore, and which version of its spec, a call is about."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended: ready or not, why, and whether (and when) to try again."""

    ready: bool
    reason: str
    message: str
    retryable: bool = False

    @classmethod
    def of(cls, reason: str, message: str) -> Outcome:
        return cls(False, reason, message, retryable=reason in reasons.RETRYABLE)


#: ``emit(store, "Normal" | "Warning", reason, message)``: posts a Kubernetes Event; returns at
#: once (the kopf layer queues it).
EventSink = Callable[[StoreRef, str, str, str], None]


class Failed(Exception):
    """A step failed for ``reason``: ends the reconciliation with that outcome."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class StoreState:
    """What the operator holds for one StateStore; ``lock`` makes work on it sequential."""

    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    book: StatusBook = field(default_factory=StatusBook)
    backend: CachedConnection = field(default_factory=CachedConnection)
    #: Every value read from a Secret: scrubbed from each message the operator writes.
    secret_values: tuple[str, ...] = ()
    #: Digest of the binding Secret and Role last published.
    published: str | None = None
    last_patch: dict[str, Any] | None = None
    last_write: float = 0.0
    deleted: bool = False
