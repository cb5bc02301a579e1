"""The binding Secret of a StateStore, in the Service Binding for Kubernetes layout.

The operator publishes one Secret per StateStore; a workload mounts it (``$SERVICE_BINDING_ROOT/
<name>/<key>``, one file per key) or reads it through the API. Keys:

| key | value |
|---|---|
| ``type`` | ``lockyard`` (the Service Binding type) |
| ``provider``, ``backend`` | the backend: ``memory``, ``redis``, ``redis-sentinel``, ... |
| ``url`` | the connection URL, credentials included, client files left out |
| ``prefix`` | the store's key prefix |
| ``default-ttl-seconds`` | the lock lease a workload uses when it gives none |
| ``lease-mirroring`` | ``true`` when held locks are mirrored as Leases |
| ``tls_ca_file``, ``sslrootcert``, ... (see ``FILE_PARAMS``) | a client file's content, if used |

A file key is named after the URL parameter that takes the file's path: whoever reads the
binding writes (or finds) the file and adds ``<key>=<path>`` to the URL. A binding read through
the API comes as Secret data (:func:`decode_secret_data`); :func:`read_secret_binding` writes its
file keys to a private temporary folder.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from lockyard.config import BackendConfig, to_url
from lockyard.errors import ConfigError

BINDING_TYPE = "lockyard"

#: Config fields naming a client file -> the URL parameter (and binding key) that carries it.
FILE_PARAMS = {
    "ca_file": "tls_ca_file",
    "cert_file": "tls_cert_file",
    "key_file": "tls_key_file",
    "sslrootcert": "sslrootcert",
    "sslcert": "sslcert",
    "sslkey": "sslkey",
}


@dataclass(frozen=True, slots=True)
class StoreBinding:
    """What a workload needs to open a store: a URL and the store's lock defaults."""

    url: str
    prefix: str
    backend: str
    default_ttl_seconds: float
    lease_mirroring: bool


def _with_query(url: str, edit: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> str:
    # Plain string surgery: urlunsplit drops the "//" of "memory://?prefix=p".
    base, _, query = url.partition("?")
    params = edit(parse_qsl(query, keep_blank_values=True))
    return f"{base}?{urlencode(params)}" if params else base


def _strip_file_params(url: str) -> str:
    return _with_query(url, lambda params: [p for p in params if p[0] not in FILE_PARAMS.values()])


def binding_data(
    config: BackendConfig,
    *,
    files: Mapping[str, str],
    default_ttl_seconds: float,
    lease_mirroring: bool,
) -> dict[str, str]:
    """The binding Secret's ``stringData`` for ``config``.

    ``files`` maps a config file field (``ca_file``, ``sslrootcert``, ...) to the file's content.
    """
    data = {
        "type": BINDING_TYPE,
        "provider": config.backend,
        "backend": config.backend,
        "url": _strip_file_params(to_url(config, with_password=True)),
        "prefix": config.prefix,
        "default-ttl-seconds": f"{default_ttl_seconds:g}",
        "lease-mirroring": "true" if lease_mirroring else "false",
    }
    for field, content in files.items():
        data[FILE_PARAMS[field]] = content
    return data


def read_binding(data: Mapping[str, str], file_path: Callable[[str], str]) -> StoreBinding:
    """A binding's settings; ``file_path(key)`` gives a path holding that key's content.

    Raises ``ConfigError`` when the data is not a Lockyard binding.
    """
    kind = data.get("type", "").strip()
    if kind != BINDING_TYPE:
        raise ConfigError(f"not a Lockyard binding: type is {kind or 'missing'!r}, not 'lockyard'")
    missing = [key for key in ("url", "prefix") if not data.get(key, "").strip()]
    if missing:
        raise ConfigError(f"the binding lacks {', '.join(missing)}")
    url = data["url"].strip()
    extra = [(param, file_path(param)) for param in FILE_PARAMS.values() if param in data]
    if extra:
        url = _with_query(url, lambda params: [*params, *extra])
    try:
        ttl = float(data.get("default-ttl-seconds", "30").strip())
    except ValueError as exc:
        raise ConfigError("the binding's default-ttl-seconds is not a number") from exc
    return StoreBinding(
        url=url,
        prefix=data["prefix"].strip(),
        backend=data.get("backend", "").strip(),
        default_ttl_seconds=ttl,
        lease_mirroring=data.get("lease-mirroring", "false").strip().lower() == "true",
    )


def decode_secret_data(secret: Mapping[str, Any], what: str) -> dict[str, str]:
    """A Secret object's base64 ``data`` as text; else ``ConfigError`` naming ``what``."""
    try:
        return {
            key: base64.b64decode(value).decode()
            for key, value in (secret.get("data") or {}).items()
        }
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} is not valid text") from exc


def read_secret_binding(data: Mapping[str, str], store: str) -> tuple[StoreBinding, Path | None]:
    """The binding in a Secret's decoded ``data``, and the folder its file keys were written to.

    The folder (mode 0700, files 0600) is made only when there are file keys, else ``None``; the
    caller deletes it once the connection no longer needs the files. On an error nothing is left.
    """
    folder: Path | None = None

    def file_path(key: str) -> str:
        nonlocal folder
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix=f"lockyard-{store}-"))
        path = folder / key
        path.write_text(data[key])
        path.chmod(0o600)
        return str(path)

    try:
        binding = read_binding(data, file_path)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return binding, folder
