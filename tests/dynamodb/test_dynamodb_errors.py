"""The DynamoDB backend's error boundary and throttling policy, as pure functions.

moto never throttles, so the retry loop is driven here by a plain coroutine that answers the way
DynamoDB does when it throttles; everything else about errors runs against real servers in
test_dynamodb_outage.py.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from lockyard import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    OperationTimeoutError,
)
from lockyard.backends.dynamodb import (
    THROTTLE_CAP_S,
    TableClient,
    is_throttling,
    make_translate,
    throttle_delays,
)
from lockyard.clock import SYSTEM_CLOCK
from lockyard.config import DynamoDBConfig

pytestmark = pytest.mark.dynamodb

CONFIG = DynamoDBConfig(table="tbl", endpoint_url="http://127.0.0.1:1", operation_timeout=1.0)


def client_error(code: str, operation: str = "PutItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, operation)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), BackendConnectionError),
        (ConnectionClosedError(endpoint_url="http://x"), BackendConnectionError),
        (ConnectTimeoutError(endpoint_url="http://x"), BackendConnectionError),
        (ReadTimeoutError(endpoint_url="http://x"), OperationTimeoutError),
        (ConnectionResetError(), BackendConnectionError),
        (NoCredentialsError(), ConfigError),
        (client_error("ProvisionedThroughputExceededException"), BackendError),
        (client_error("AccessDeniedException"), BackendError),
        (client_error("ResourceNotFoundException"), BackendError),
        (client_error("ValidationException"), BackendError),
        (client_error("RequestTimeout"), OperationTimeoutError),
    ],
)
def test_driver_errors_map_by_class_and_code(exc: BaseException, expected: type) -> None:
    mapped = make_translate(CONFIG)(exc)
    assert type(mapped) is expected


def test_foreign_errors_and_the_operation_timeout_are_left_alone() -> None:
    assert make_translate(CONFIG)(KeyError("x")) is None
    assert make_translate(CONFIG)(TimeoutError()) is None


def test_only_throttling_codes_are_retryable() -> None:
    assert is_throttling(client_error("ProvisionedThroughputExceededException"))
    assert is_throttling(client_error("ThrottlingException"))
    assert is_throttling(client_error("RequestLimitExceeded"))
    assert not is_throttling(client_error("ConditionalCheckFailedException"))
    assert not is_throttling(client_error("InternalServerError"))
    assert not is_throttling(EndpointConnectionError(endpoint_url="http://x"))


def test_throttle_pauses_grow_stay_capped_and_fit_the_budget() -> None:
    pauses = list(throttle_delays(5.0, rand=lambda: 0.999))
    assert pauses[0] == pytest.approx(0.025, rel=0.01)
    assert all(b >= a for a, b in itertools.pairwise(pauses))
    assert max(pauses) <= THROTTLE_CAP_S
    assert sum(pauses) < 5.0
    assert sum(list(throttle_delays(0.3, rand=random.random))) < 0.3


class Throttled:
    """Answers like DynamoDB under throttling ``failures`` times, then succeeds."""

    def __init__(self, failures: int, code: str = "ProvisionedThroughputExceededException"):
        self.failures, self.code, self.calls = failures, code, 0

    async def __call__(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise client_error(self.code)
        return {"ok": params["TableName"]}


async def test_throttled_requests_are_resent_within_the_budget() -> None:
    table = TableClient(None, CONFIG, SYSTEM_CLOCK, lambda: 0.5)
    method = Throttled(3)
    assert await table.call(method) == {"ok": "tbl"}
    assert method.calls == 4


async def test_throttling_beyond_the_budget_surfaces() -> None:
    table = TableClient(
        None, CONFIG.model_copy(update={"operation_timeout": 0.1}), SYSTEM_CLOCK, lambda: 1
    )
    method = Throttled(100)
    with pytest.raises(ClientError):
        await table.call(method)
    assert 1 < method.calls < 10


async def test_other_errors_are_never_resent() -> None:
    table = TableClient(None, CONFIG, SYSTEM_CLOCK, random.random)
    method = Throttled(1, code="InternalServerError")
    with pytest.raises(ClientError):
        await table.call(method)
    assert method.calls == 1
