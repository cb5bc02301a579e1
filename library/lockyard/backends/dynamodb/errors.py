"""The DynamoDB backend's error boundary: the one place botocore and aiobotocore errors become
Lockyard's (:func:`make_translate`, by class and error code, most specific first)."""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from lockyard.config import DynamoDBConfig
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    ConfigError,
    OperationTimeoutError,
    StateError,
)
from lockyard.operations import ErrorTranslator

#: Error codes of a request DynamoDB refused unprocessed because of throughput limits.
THROTTLING_CODES: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


def error_code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def make_translate(config: DynamoDBConfig, *, opening: bool = False) -> ErrorTranslator:
    """The one place where botocore/aiobotocore errors become Lockyard errors (by class/code).

    ``opening``: for the requests that open a handle, where an endpoint that takes the request
    but does not answer it in time is unreachable for now, as on every backend
    (``BackendConnectionError.not_answering``); later it is an operation that timed out."""
    where = config.endpoint_url or f"DynamoDB in {config.region}"
    server = f"dynamodb at {where}" if config.endpoint_url else f"dynamodb in {config.region}"
    table = config.table

    def translate(exc: BaseException) -> StateError | None:
        if isinstance(exc, TimeoutError):
            return None  # the operation timeout itself: the runner reports it (an OSError too)
        if isinstance(exc, ClientError):
            code = error_code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code in THROTTLING_CODES:
                return BackendError(
                    f"dynamodb: table {table!r} is still throttled ({code}) after retrying for "
                    "the operation timeout: raise its capacity or use on-demand billing"
                )
            if code == "ResourceNotFoundException":
                return BackendError(
                    f"dynamodb: table {table!r} (or an index of it) does not exist at {where}: "
                    f"{message}"
                )
            if code in {"RequestTimeout", "RequestTimeoutException"}:
                return OperationTimeoutError(f"dynamodb: {code} from {where}")
            return BackendError(f"dynamodb refused the request on {table!r}: {code}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError):
            return ConfigError(
                f"dynamodb: {exc}: configure the AWS credential chain, or give a key pair "
                "(dynamodb://KEY_ID:SECRET@TABLE or access_key_id/secret_access_key)"
            )
        if isinstance(exc, ReadTimeoutError):
            if opening:
                return BackendConnectionError.not_answering(server, config.operation_timeout)
            return OperationTimeoutError(f"dynamodb: no answer from {where}: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            # Refused, reset, closed, TLS and connect timeouts: the endpoint cannot be reached.
            return BackendConnectionError(f"dynamodb: cannot reach {where}: {exc}")
        if isinstance(exc, CredentialRetrievalError):
            return BackendError(f"dynamodb: the AWS credential provider failed: {exc}")
        if isinstance(exc, BotoCoreError):
            return BackendError(f"dynamodb: {exc}")
        if isinstance(exc, OSError):
            return BackendConnectionError(f"dynamodb: cannot reach {where}: {exc}")
        return None

    return translate
