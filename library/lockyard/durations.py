"""TTLs and timeouts: one conversion to whole milliseconds, rounding sub-millisecond rests up.

A TTL (of a key or a lock) is at most :data:`MAX_TTL`, 100 years, on every backend: PostgreSQL
computes deadlines as ``interval`` values, which overflow near 290,000 years, and a far smaller
documented bound leaves every backend's deadline arithmetic exact. ``None`` means no expiry.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeAlias

Duration: TypeAlias = int | float | timedelta

#: The longest TTL a key or lock may have (use ``None`` for keys that never expire).
MAX_TTL = timedelta(days=36_500)
MAX_TTL_MS = 36_500 * 86_400_000


def _seconds(value: object, what: str) -> float:
    if type(value) is float or type(value) is int:  # nearly every call: no union isinstance
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise TypeError(
            f"{what} must be seconds (int or float) or a datetime.timedelta, "
            f"got {type(value).__name__}"
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    return seconds


def ttl_to_ms(ttl: Duration | None) -> int | None:
    """``None`` stays ``None``; a positive duration becomes whole milliseconds (rounded up)."""
    if ttl is None:
        return None
    seconds = _seconds(ttl, "ttl")
    if seconds <= 0:
        raise ValueError(f"ttl must be positive (or None for no expiry), got {ttl!r}")
    scaled = seconds * 1000
    ms = int(scaled)
    if ms != scaled:  # a rest below a millisecond: round it up, float noise aside
        ms = max(1, math.ceil(round(scaled, 6)))
    if ms > MAX_TTL_MS:
        raise ValueError(
            f"ttl must be at most 100 years ({MAX_TTL_MS // 1000} s; None means no expiry), "
            f"got {ttl!r}"
        )
    return ms


def lock_ttl_to_ms(ttl: Duration) -> int:
    """A lock's lease: like a TTL, but ``None`` is not allowed (a lock always expires)."""
    if ttl is None:
        raise ValueError("a lock ttl is required: locks always expire")
    ms = ttl_to_ms(ttl)
    assert ms is not None
    return ms


def timeout_to_seconds(timeout: Duration) -> float:
    """A wait timeout in seconds; zero is allowed (one attempt), negative is not."""
    seconds = _seconds(timeout, "timeout")
    if seconds < 0:
        raise ValueError(f"timeout must be zero or positive, got {timeout!r}")
    return seconds
