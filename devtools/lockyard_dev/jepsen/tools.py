"""The Go tools the Jepsen runs need, built on demand by ``scripts/build-go-tools.sh``.

Each tool's folder ``tools/<tool>/`` pins it (``build.env``: plain ``KEY=value`` lines); the
binaries live in ``$LOCKYARD_CACHE/tools/<tool>-<VERSION>/bin/`` (``~/.cache/lockyard`` by
default). The script prints nothing and returns at once when they are current.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lockyard_dev.repository import repository_root

TOXIPROXY = "toxiproxy"
PORCUPINE = "porcupine"


class ToolBuildError(RuntimeError):
    """A Go tool could not be built; the message carries the script's output."""


def cache_root() -> Path:
    return Path(os.environ.get("LOCKYARD_CACHE", "~/.cache/lockyard")).expanduser()


def build_env(tool: str, root: Path | None = None) -> dict[str, str]:
    """``tools/<tool>/build.env`` as a dict (the value is everything after the first ``=``)."""
    path = (root or repository_root()) / "tools" / tool / "build.env"
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value
    return values


def tool_binary(tool: str, binary: str, *, build: bool = True) -> Path:
    """The path of ``binary`` from ``tool``, built first when missing or stale."""
    root = repository_root()
    version = build_env(tool, root)["VERSION"]
    path = cache_root() / "tools" / f"{tool}-{version}" / "bin" / binary
    if build:
        script = root / "scripts" / "build-go-tools.sh"
        done = subprocess.run(
            ["bash", str(script), tool], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ToolBuildError(f"{script} {tool} failed:\n{done.stdout}{done.stderr}")
    if not path.is_file():
        raise ToolBuildError(f"{path} is missing after building {tool}")
    return path


def toxiproxy_server() -> Path:
    return tool_binary(TOXIPROXY, "toxiproxy-server")


def porcupine_checker() -> Path:
    return tool_binary(PORCUPINE, "lockyard-porcupine")
