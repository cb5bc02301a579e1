"""A throw-away test PKI made with the ``openssl`` command (so no Python crypto dependency).

:func:`make_ca` makes a self-signed CA; :func:`make_certificate` a leaf certificate it signs, for a
server (``serverAuth``, with subjectAltNames) or a client (``clientAuth``, the user as CN and an
optional O, which Kubernetes reads as a group). Keys are EC P-256: quick to generate, and accepted
by Python's ssl, OpenSSL servers (Redis, PostgreSQL) and Go (Kubernetes) alike. Every certificate
carries the extensions strict verifiers insist on (critical basicConstraints and keyUsage, subject
and authority key identifiers) and a random serial, so no serial file is left beside the CA.

Files are named after ``name`` in the folder given: ``NAME.crt`` and ``NAME.key`` (mode 0600).
They are valid for ``days`` (2 by default: long enough for a test session).
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from lockyard_dev.servers.process import ServerStartError, require_binary

#: The names a certificate for a loopback test server is valid for.
SERVER_NAMES = ("localhost", "127.0.0.1")

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key files (PEM)."""

    cert_file: Path
    key_file: Path


class KeyPair(NamedTuple):
    """A leaf certificate and its key (PEM files); unpacks as ``cert, key``."""

    cert_file: Path
    key_file: Path


def run_openssl(*args: str, cwd: Path) -> None:
    """Run ``openssl ARGS`` in ``cwd``; a failure raises ServerStartError with its stderr."""
    openssl = require_binary("openssl", "install the openssl command (apt-get install openssl)")
    result = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise ServerStartError(f"openssl {args[0]} failed:\n{result.stderr.strip()}")


def make_ca(
    folder: Path, name: str = "ca", *, common_name: str | None = None, days: int = 2
) -> CertificateAuthority:
    """A self-signed CA in ``folder`` (CN ``lockyard test NAME`` unless ``common_name``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    run_openssl(
        "req", "-x509", *_EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", str(days),
        "-subj", f"/CN={common_name or f'lockyard test {name}'}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=folder,
    )  # fmt: skip
    key.chmod(0o600)
    return CertificateAuthority(cert, key)


def make_certificate(
    ca: CertificateAuthority,
    folder: Path,
    name: str,
    common_name: str,
    *,
    server: bool = False,
    names: Sequence[str] = (),
    organization: str | None = None,
    days: int = 2,
) -> KeyPair:
    """A certificate signed by ``ca`` in ``folder``: for a server valid for ``names`` (DNS names
    or IP addresses) when ``server``, else for a client."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    csr, extfile = folder / f"{name}.csr", folder / f"{name}.ext"
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    if names:
        extensions.append("subjectAltName=" + ",".join(_alt_name(n) for n in names))
    extfile.write_text("\n".join(extensions) + "\n")
    subject = (f"/O={organization}" if organization else "") + f"/CN={common_name}"
    run_openssl(
        "req", "-new", *_EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", subject,
        cwd=folder,
    )  # fmt: skip
    run_openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file),
        "-set_serial", str(secrets.randbits(62)), "-days", str(days),
        "-extfile", str(extfile), "-out", str(cert),
        cwd=folder,
    )  # fmt: skip
    csr.unlink()
    key.chmod(0o600)
    return KeyPair(cert, key)


def make_server_certificate(
    ca: CertificateAuthority, folder: Path, names: Sequence[str] = SERVER_NAMES
) -> KeyPair:
    """``server.crt``/``server.key`` signed by ``ca``, valid for ``names`` (the first is the CN)."""
    return make_certificate(ca, folder, "server", names[0], server=True, names=names)


def make_client_certificate(ca: CertificateAuthority, folder: Path, user: str) -> KeyPair:
    """``client.crt``/``client.key`` signed by ``ca`` with CN ``user``."""
    return make_certificate(ca, folder, "client", user)


def _alt_name(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"DNS:{name}"
    return f"IP:{name}"
