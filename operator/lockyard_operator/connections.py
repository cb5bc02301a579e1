"""The connection cache: the one open ``lockyard.Connection`` the operator keeps per StateStore.

Opening a backend costs (pools, Redis scripts loaded, PostgreSQL migrations, a DynamoDB table
check), so the connection is kept and reused while the backend config and client files are
unchanged; a rotated Secret or a changed spec opens a new one, then closes the old. The store's
:class:`~lockyard_operator.fresh_login.LoginCheck` is built from the same config and lives as
long as the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping

import lockyard
from lockyard.config import BackendConfig, to_url
from lockyard.connection import Connection
from lockyard_operator.fresh_login import LoginCheck, login_check

#: Extra time beyond the operation timeout that connecting may take (pools, TLS, migrations).
CONNECT_GRACE_S = 10.0
#: The operator's own connection does one thing at a time (probe, purge, reap, under the
#: store's lock), so one pooled connection is enough: a backend serving many stores sees one
#: kept connection per store, not a pool per store. Workloads keep the spec's pool size.
OPERATOR_POOL_SIZE = 1


def fingerprint(config: BackendConfig, files: Mapping[str, str]) -> str:
    """Identifies a config with its credentials and client files (nothing else is kept)."""
    material = [to_url(config, with_password=True), sorted(files.items())]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


class CachedConnection:
    """One store's open connection and login check, or neither."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.login: LoginCheck | None = None
        self._fingerprint: str | None = None

    async def open(
        self, config: BackendConfig, files: Mapping[str, str]
    ) -> tuple[Connection, bool]:
        """The open connection for ``config``, and whether it was opened just now.

        Raises whatever ``lockyard.connect`` raises (or ``TimeoutError``); the caller
        classifies it.
        """
        wanted = fingerprint(config, files)
        if self.connection is not None and self._fingerprint == wanted:
            return self.connection, False
        await self.close()
        own = config
        if hasattr(config, "pool_size"):
            own = config.model_copy(update={"pool_size": OPERATOR_POOL_SIZE})
        async with asyncio.timeout(config.operation_timeout + CONNECT_GRACE_S):
            connection = await lockyard.connect(own)
        self.connection, self.login, self._fingerprint = connection, login_check(config), wanted
        return connection, True

    async def close(self) -> None:
        """Close the connection and the login check, if open; never raises."""
        connection, login = self.connection, self.login
        self.connection, self.login, self._fingerprint = None, None, None
        if login is not None:
            with contextlib.suppress(Exception):
                await login.close()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
