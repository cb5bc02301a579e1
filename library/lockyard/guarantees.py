"""What a backend promises, as data: reported by ``Connection.guarantees`` and StateStore status."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Guarantees:
    """The lock-safety and precision promises of one backend (spec section 4)."""

    mutual_exclusion: str
    failover_safety: str
    fencing: str
    ttl_precision: str
    clock: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
