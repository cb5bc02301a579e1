"""How the PostgreSQL backend reaches its server: asyncpg's connection arguments and TLS.

:func:`ssl_setting` follows libpq's ``sslmode`` semantics; :func:`connect_kwargs` is what every
connection of a backend (the pool, the LISTEN connection, ``lockyard migrate``) opens with, and
:func:`connect` opens one connection outside the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import asyncpg

from lockyard.config import PostgresConfig
from lockyard.errors import ConfigError

from .errors import ConnectTimeoutError


def ssl_setting(config: PostgresConfig) -> ssl.SSLContext | str | bool:
    """asyncpg's ``ssl=`` argument for the config's ``sslmode`` and certificate files.

    ``disable``: plain TCP. ``allow``/``prefer`` (without a client certificate): asyncpg's own
    negotiation, unverified. ``require``: TLS, unverified unless ``sslrootcert`` is given (then
    the CA is checked, as libpq does). ``verify-ca``: the CA is checked against ``sslrootcert``
    (or the system's trust store). ``verify-full``: the CA and the host name. A client
    certificate (``sslcert``/``sslkey``) always means TLS.
    """
    mode = config.sslmode
    if mode == "disable":
        return False
    if mode in ("allow", "prefer") and not config.sslcert:
        return mode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    verify = mode in ("verify-ca", "verify-full") or (mode == "require" and config.sslrootcert)
    try:
        if verify:
            if config.sslrootcert:
                context.load_verify_locations(cafile=config.sslrootcert)
            else:
                context.load_default_certs()
            context.verify_mode = ssl.CERT_REQUIRED
            context.check_hostname = mode == "verify-full"
        else:
            context.verify_mode = ssl.CERT_NONE
        if config.sslcert:
            context.load_cert_chain(config.sslcert, keyfile=config.sslkey)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"postgresql TLS settings: cannot load a certificate: {exc}") from exc
    return context


def connect_kwargs(config: PostgresConfig, application: str = "lockyard") -> dict[str, Any]:
    """Arguments for ``asyncpg.connect``/``create_pool`` from the config."""
    password = config.password.get_secret_value() if config.password is not None else None
    return {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "password": password,
        "database": config.database,
        "ssl": ssl_setting(config),
        "timeout": config.operation_timeout,
        "server_settings": {
            "application_name": application,
            # The server gives up on a statement when the client does.
            "statement_timeout": str(max(1, round(config.operation_timeout * 1000))),
        },
    }


async def connect(kwargs: dict[str, Any]) -> asyncpg.Connection:
    """``asyncpg.connect(**kwargs)``; if cancelled, it still finishes and then drops the connection.

    Cancelled half-way, asyncpg closes a TLS transport gracefully without waiting for it, and
    when the event loop ends soon after (a closing application, a test) the socket is never
    closed. Letting the connect finish (it is bounded by its own timeout) and then terminating
    the connection closes it at once.

    asyncpg's own ``timeout`` running out raises :class:`~.errors.ConnectTimeoutError`, which
    the error boundary reports as an unreachable server.
    """
    connecting = asyncio.ensure_future(asyncpg.connect(**kwargs))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            (await connecting).terminate()
        raise
    except TimeoutError as exc:
        raise ConnectTimeoutError(kwargs["timeout"]) from exc
