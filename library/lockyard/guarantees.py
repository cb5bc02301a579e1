"""What a backend promises, as data: reported by ``Connection.guarantees`` and StateStore status."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Guarantees:
    """The lock-safety and precision promises of one backend (spec section 4).

    ``fifo_waiters``: callers that wait in ``acquire`` are served in arrival order (a FIFO queue
    per lock name, see :mod:`lockyard.locks`); ``False`` where the backend has no release signal
    to hand the lock over with (waiters then poll, and the fastest poller wins).
    """

    mutual_exclusion: str
    failover_safety: str
    fencing: str
    ttl_precision: str
    clock: str
    fifo_waiters: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        return asdict(self)
