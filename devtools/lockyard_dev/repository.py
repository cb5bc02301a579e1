"""Where the Lockyard source checkout is, for tooling that reads its files (deploy/, crds/, tools/).

Tooling never derives the checkout from its own location (an installed copy of ``lockyard_dev``
can live anywhere): ``$LOCKYARD_REPO`` names it, or else it is the nearest folder, from the
working directory up, whose ``pyproject.toml`` declares the ``lockyard`` project.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ENV_VAR = "LOCKYARD_REPO"
PROJECT_NAME = "lockyard"


class RepositoryNotFound(RuntimeError):
    """No Lockyard checkout here; the message says where it looked and how to name one."""


def _declares_lockyard(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == PROJECT_NAME


def repository_root(start: Path | None = None) -> Path:
    """The checkout's root: ``$LOCKYARD_REPO`` if set, else found from ``start`` (the cwd) up."""
    override = os.environ.get(ENV_VAR)
    if override:
        root = Path(override).expanduser().resolve()
        if not _declares_lockyard(root):
            raise RepositoryNotFound(f"${ENV_VAR}={override} holds no Lockyard pyproject.toml")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _declares_lockyard(folder):
            return folder
    raise RepositoryNotFound(
        f"no Lockyard checkout at or above {here}: run from inside one, or set ${ENV_VAR}"
    )
