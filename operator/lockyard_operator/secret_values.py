"""Secret handling: read the Secret keys a spec references, check them, and turn spec and
values into the backend config (client files written to a private folder).

Values never leave this module except inside the config and the files; the reconciler keeps
them only to scrub them from messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lockyard.config import BackendConfig
from lockyard.config.resource import SecretKeyRef, StateStoreSpec
from lockyard.errors import ConfigError
from lockyard.kube.binding import FILE_PARAMS
from lockyard_operator import reasons
from lockyard_operator.kube import KubeApi, KubeApiError, secrets_path
from lockyard_operator.state import Failed

#: One PEM block (RFC 7468): a BEGIN line, base64 text (RFC 1421 headers allowed), an END line.
_PEM_BLOCK = re.compile(r"-----BEGIN ([^-\n]+)-----(.*?)-----END \1-----", re.DOTALL)


async def read_values(
    api: KubeApi, namespace: str, spec: StateStoreSpec
) -> dict[SecretKeyRef, str]:
    """Every Secret key the spec references, decoded (each Secret read once).

    ``Failed`` with ``SecretNotFound`` naming the Secret and key, ``InvalidSpec`` for a value
    that is not text, ``KubernetesAPIError`` if reading fails.
    """
    secrets: dict[str, Mapping[str, Any]] = {}
    values: dict[SecretKeyRef, str] = {}
    for _, ref in spec.secret_refs():
        if ref.name not in secrets:
            try:
                secret = await api.get_or_none(secrets_path(namespace, ref.name))
            except KubeApiError as exc:
                raise Failed(
                    reasons.KUBERNETES_API_ERROR, f'reading Secret "{ref.name}" failed: {exc}'
                ) from None
            if secret is None:
                raise Failed(
                    reasons.SECRET_NOT_FOUND,
                    f'Secret "{ref.name}" not found (needed for key "{ref.key}")',
                )
            secrets[ref.name] = secret
        values[ref] = decode(secrets[ref.name], ref)
    return values


def decode(secret: Mapping[str, Any], ref: SecretKeyRef) -> str:
    data = secret.get("data") or {}
    if ref.key not in data:
        raise Failed(reasons.SECRET_NOT_FOUND, f'key "{ref.key}" not found in Secret "{ref.name}"')
    try:
        return base64.b64decode(data[ref.key]).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Failed(
            reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not UTF-8 text'
        ) from None


def check_pem(ref: SecretKeyRef, text: str) -> None:
    """A client file (CA, certificate, key) read from a Secret must be PEM.

    Checked here because the TLS library's own error ("[X509] PEM lib") names neither the
    Secret nor the key.
    """
    blocks = _PEM_BLOCK.findall(text)
    try:
        for _, body in blocks:
            lines = [line.strip() for line in body.splitlines() if ":" not in line]
            base64.b64decode("".join(lines), validate=True)
    except binascii.Error:
        blocks = []
    if not blocks:
        raise Failed(
            reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not a PEM file'
        )


def build_config(
    namespace: str,
    name: str,
    spec: StateStoreSpec,
    values: Mapping[SecretKeyRef, str],
    folder: Path,
) -> tuple[BackendConfig, dict[str, str]]:
    """The backend config, and the client files it uses (config field -> content).

    Client files are written under ``folder`` (mode 0700, files 0600), named by a hash of
    their Secret reference so a rotation overwrites them in place.
    """
    files = {field: values[ref] for field, ref in spec.secret_refs() if field in FILE_PARAMS}

    def secret_file(ref: SecretKeyRef) -> str:
        check_pem(ref, values[ref])
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / hashlib.sha256(str(ref).encode()).hexdigest()[:16]
        path.touch(mode=0o600)
        path.write_text(values[ref])
        return str(path)

    try:
        config = spec.to_config(
            namespace=namespace,
            name=name,
            secret_value=values.__getitem__,
            secret_file=secret_file,
        )
    except ConfigError as exc:
        raise Failed(reasons.INVALID_SPEC, str(exc)) from None
    return config, files
