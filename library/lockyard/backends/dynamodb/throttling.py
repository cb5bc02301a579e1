"""Throttled DynamoDB requests are re-sent, with full-jitter exponential backoff, while the
operation timeout leaves room.

A throttled request was not applied, so re-sending is safe for every operation. Botocore's own
retries are off: they would also re-send requests that may have been applied (see
docs/backends/dynamodb.md).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, TypeVar

from botocore.exceptions import ClientError

from .errors import THROTTLING_CODES, error_code

T = TypeVar("T")

THROTTLE_BASE_S: Final = 0.025
THROTTLE_CAP_S: Final = 1.0


def is_throttling(exc: BaseException) -> bool:
    """Whether DynamoDB refused ``exc``'s request unprocessed because of throughput limits."""
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_CODES


def throttle_delays(budget_s: float, rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Full-jitter exponential pauses (25 ms doubling, 1 s cap) that together fit ``budget_s``."""
    spent, ceiling = 0.0, THROTTLE_BASE_S
    while True:
        pause = rand() * ceiling
        if spent + pause >= budget_s:
            return
        spent += pause
        yield pause
        ceiling = min(ceiling * 2, THROTTLE_CAP_S)


async def retry_throttled(
    request: Callable[[], Awaitable[T]],
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]],
    rand: Callable[[], float] = random.random,
) -> T:
    """``request()``, re-sent after throttling (never applied by DynamoDB) within ``budget_s``."""
    delays = throttle_delays(budget_s, rand)
    while True:
        try:
            return await request()
        except ClientError as exc:
            pause = next(delays, None) if is_throttling(exc) else None
            if pause is None:
                raise
        await sleep(pause)
