"""Failures map onto condition reasons by the exception chain, never by message text."""

from __future__ import annotations

import ssl

import asyncpg
import pytest
import redis.exceptions
from botocore.exceptions import ClientError

from lockyard.errors import BackendConnectionError, BackendError, ConfigError, OperationTimeoutError
from lockyard_operator import reasons
from lockyard_operator.classify import classify, scrub


def chained(outer: Exception, cause: BaseException) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (chained(BackendConnectionError("x"), ConnectionRefusedError(111, "refused")),
         reasons.BACKEND_UNREACHABLE),
        (OperationTimeoutError("slow"), reasons.BACKEND_UNREACHABLE),
        (chained(BackendConnectionError("x"), ssl.SSLCertVerificationError("bad cert")),
         reasons.TLS_FAILED),
        (chained(BackendError("x"), redis.exceptions.AuthenticationError("WRONGPASS")),
         reasons.AUTHENTICATION_FAILED),
        (chained(BackendError("x"), asyncpg.exceptions.InvalidPasswordError("no")),
         reasons.AUTHENTICATION_FAILED),
        (chained(
            BackendError("x"),
            ClientError({"Error": {"Code": "UnrecognizedClientException"}}, "GetItem"),
        ), reasons.AUTHENTICATION_FAILED),
        (chained(BackendError("x"), ClientError({"Error": {"Code": "Throttling"}}, "GetItem")),
         reasons.BACKEND_REFUSED),
        # moto answers a JSON-protocol call in XML: botocore finds no code, only the status.
        (ClientError({"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                     "DescribeTable"), reasons.AUTHENTICATION_FAILED),
        (ClientError({"Error": {"Code": "SignatureDoesNotMatch"}}, "DescribeTable"),
         reasons.AUTHENTICATION_FAILED),
        (ClientError({"Error": {"Code": "ThrottlingException"},
                      "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetItem"),
         reasons.BACKEND_REFUSED),
        (BackendError("read only"), reasons.BACKEND_REFUSED),
        (ConfigError("bad url"), reasons.INVALID_SPEC),
        (RuntimeError("driver bug"), reasons.BACKEND_REFUSED),
    ],
)  # fmt: skip
def test_classify(error: Exception, reason: str) -> None:
    assert classify(error).reason == reason


def test_the_context_chain_counts_too() -> None:
    error = BackendError("refused")
    error.__context__ = redis.exceptions.AuthenticationError("invalid password")
    assert classify(error).reason == reasons.AUTHENTICATION_FAILED


def test_scrub_removes_every_secret_longest_first() -> None:
    text = "auth failed for hunter2 (hunter22 tried)"
    assert scrub(text, ["hunter2", "hunter22", ""]) == "auth failed for *** (*** tried)"
