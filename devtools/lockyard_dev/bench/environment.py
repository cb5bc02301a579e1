"""What the benchmark ran on: machine, Python, and the versions of every driver and peer."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata

DISTRIBUTIONS = (
    "redis",
    "hiredis",
    "asyncpg",
    "aioboto3",
    "python-redis-lock",
    "pottery",
    "aioredlock",
    "tooz",
    "psycopg2-binary",
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def describe_environment() -> dict[str, str]:
    from lockyard import __version__

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    drivers = ", ".join(
        f"{name} {version}" for name in DISTRIBUTIONS if (version := _version(name)) is not None
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "load": load,
        "lockyard": __version__,
        "drivers": drivers or "none",
    }
