"""The status of one StateStore as the operator last wrote it, and the patch that writes it.

Conditions follow the Kubernetes API conventions: one entry per type, each with its own
``observedGeneration``, and a ``lastTransitionTime`` that changes only when ``status`` changes
(a new reason or message alone keeps it). The book is seeded from the object's existing status
when the operator first sees it, so a restart keeps the transition times.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lockyard.config.resource import (
    BackendStatus,
    BindingStatus,
    Condition,
    ConditionStatus,
    GuaranteesStatus,
    LocksStatus,
    StateStoreStatus,
)
from lockyard.guarantees import Guarantees
from lockyard_operator import reasons

#: Conditions every status carries, in this order (others follow as they appear).
CONDITION_ORDER = (
    reasons.READY,
    reasons.SECRETS_RESOLVED,
    reasons.BACKEND_REACHABLE,
    reasons.BINDING_PUBLISHED,
)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusBook:
    """Everything the operator reports about one store."""

    def __init__(self) -> None:
        self.conditions: dict[str, Condition] = {}
        self.observed_generation: int | None = None
        self.prefix: str | None = None
        self.backend: BackendStatus | None = None
        self.guarantees: GuaranteesStatus | None = None
        self.locks_held: int | None = None
        self.binding: str | None = None
        self.seeded = False

    def seed(self, status: Mapping[str, Any] | None) -> None:
        """Adopt an existing status (once): keeps transition times across operator restarts."""
        if self.seeded:
            return
        self.seeded = True
        if not status:
            return
        try:
            existing = StateStoreStatus.model_validate(dict(status))
        except ValidationError:
            return  # written by something else: start afresh rather than guess
        self.conditions = {c.type: c for c in existing.conditions}
        self.observed_generation = existing.observed_generation
        self.prefix = existing.prefix
        self.backend = existing.backend
        self.guarantees = existing.guarantees
        self.locks_held = existing.locks.held if existing.locks else None
        self.binding = existing.binding.name if existing.binding else None

    def condition(self, type_: str) -> Condition | None:
        return self.conditions.get(type_)

    def is_true(self, type_: str) -> bool:
        condition = self.conditions.get(type_)
        return condition is not None and condition.status == "True"

    def set(
        self, type_: str, status: bool | None, reason: str, message: str, generation: int | None
    ) -> bool:
        """Record a condition; ``True`` if its status changed (a transition)."""
        value: ConditionStatus = "Unknown" if status is None else "True" if status else "False"
        previous = self.conditions.get(type_)
        changed = previous is None or previous.status != value
        self.conditions[type_] = Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=(
                now_rfc3339() if changed or previous is None else previous.last_transition_time
            ),
        )
        return changed

    def set_guarantees(self, guarantees: Guarantees) -> None:
        self.guarantees = GuaranteesStatus.model_validate(guarantees.as_dict())

    def to_status(self) -> StateStoreStatus:
        ordered = [self.conditions[t] for t in CONDITION_ORDER if t in self.conditions]
        ordered += [c for t, c in self.conditions.items() if t not in CONDITION_ORDER]
        return StateStoreStatus(
            observed_generation=self.observed_generation,
            conditions=ordered,
            prefix=self.prefix,
            backend=self.backend,
            guarantees=self.guarantees,
            locks=LocksStatus(held=self.locks_held) if self.locks_held is not None else None,
            binding=BindingStatus(name=self.binding) if self.binding else None,
        )

    def patch(self) -> dict[str, Any]:
        """A JSON merge patch writing the whole status (``None`` removes a stale field)."""
        status = self.to_status()
        body = status.model_dump(by_alias=True, mode="json")
        # Conditions travel as a whole list: unset optional fields are left out, not null.
        body["conditions"] = [
            c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in status.conditions
        ]
        return {"status": body}
