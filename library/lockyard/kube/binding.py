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
binding writes (or finds) the file and adds ``<key>=<path>`` to the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
