"""The errors of a Kubernetes API call, for every caller (library, mirror, CLI, operator)::

    KubeApiError            the API answered with an error status (``status``: 404, 409, ...)
    └── KubeUnreachableError  no answer: refused, reset, TLS failure or timeout (``status`` 0)

Missing or unusable credentials are a configuration problem, not an API answer: they raise
``lockyard.errors.ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class KubeApiError(Exception):
    """The API answered with an error status (``KubeUnreachableError``: it did not answer).

    ``message`` is the API's own message (a Status object never carries object data), and
    ``api_reason`` its CamelCase reason (``AlreadyExists``, ``Conflict``, ...).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str = "",
        body: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.body = dict(body or {})
        self.message = message or str(self.body.get("message") or "") or reason
        #: Seconds the server asked to wait (``Retry-After``), if it did.
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} {reason}: {self.message}" if status else self.message)

    @property
    def api_reason(self) -> str:
        reason = self.body.get("reason")
        return reason if isinstance(reason, str) else ""

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)

    @property
    def unreachable(self) -> bool:
        return self.status == 0

    @property
    def transient(self) -> bool:
        """Worth retrying later unchanged: unreachable, throttled, server-side, or not allowed
        *yet* (RBAC can be granted after the fact)."""
        return self.status in (0, 401, 403, 408, 429) or self.status >= 500


class KubeUnreachableError(KubeApiError):
    """The API server could not be reached or did not answer in time (``status`` 0)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "Unreachable", f"cannot reach the Kubernetes API: {detail}")
        #: What went wrong (the transport's error), without the leading sentence.
        self.detail = detail
