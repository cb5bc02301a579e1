"""Turn an exception from connecting to or probing a backend into a condition reason.

The library's errors say *that* a backend failed (``BackendConnectionError``: cannot reach it;
``BackendError``: it refused); the chain of causes says *why*. The status needs the why, so this
walks ``__cause__``/``__context__`` and matches classes by their qualified name, most specific
first (no driver is imported here, so a missing extra cannot break classification).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    OperationTimeoutError,
)
from lockyard_operator import reasons

#: Driver exceptions meaning "wrong credentials", by ``module.QualifiedName``.
AUTHENTICATION_ERRORS = frozenset(
    {
        "redis.exceptions.AuthenticationError",
        "redis.exceptions.AuthenticationWrongNumberOfArgsError",
        "asyncpg.exceptions.InvalidPasswordError",
        "asyncpg.exceptions.InvalidAuthorizationSpecificationError",
        "botocore.exceptions.NoCredentialsError",
        "botocore.exceptions.PartialCredentialsError",
    }
)
#: AWS error codes (``ClientError.response["Error"]["Code"]``) meaning "wrong credentials".
AWS_AUTHENTICATION_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        # What IAM-style endpoints say for a wrong secret key and a denied action.
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "AccessDeniedException",
    }
)
#: Driver exceptions meaning "the TLS handshake failed" (besides ``ssl.SSLError`` itself).
TLS_ERRORS = frozenset({"botocore.exceptions.SSLError"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a backend cannot be used: a reason constant and a message for people."""

    reason: str
    message: str


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def _aws_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _aws_forbidden(exc: BaseException) -> bool:
    """An AWS-style answer with HTTP status 403: the endpoint refused who signed the request.

    Some DynamoDB-compatible endpoints (moto among them) answer in a format botocore cannot
    parse a code from, so the status is the only dependable sign.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return bool(response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403)
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def classify(exc: BaseException) -> Problem:
    """The reason and message for a failure to connect to or probe a backend."""
    chain = list(_chain(exc))
    summary = _describe(exc)
    for link in chain:
        if isinstance(link, ssl.SSLError) or _names(link) & TLS_ERRORS:
            return Problem(reasons.TLS_FAILED, f"TLS handshake failed: {_describe(link)}")
    for link in chain:
        if (
            _names(link) & AUTHENTICATION_ERRORS
            or _aws_code(link) in AWS_AUTHENTICATION_CODES
            or _aws_forbidden(link)
        ):
            return Problem(reasons.AUTHENTICATION_FAILED, f"authentication failed: {summary}")
    for link in chain:
        if isinstance(link, ConfigError):
            return Problem(reasons.INVALID_SPEC, summary)
    for link in chain:
        # OSError covers refused, reset, DNS and TimeoutError (so OperationTimeoutError too).
        if isinstance(link, BackendConnectionError | OperationTimeoutError | OSError):
            return Problem(reasons.BACKEND_UNREACHABLE, f"backend unreachable: {summary}")
    for link in chain:
        if isinstance(link, BackendError):
            return Problem(reasons.BACKEND_REFUSED, f"backend refused: {summary}")
    return Problem(reasons.BACKEND_REFUSED, f"{type(exc).__name__}: {summary}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (status, events and logs)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
