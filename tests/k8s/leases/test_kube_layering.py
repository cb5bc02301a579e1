"""The mirror is built on ``lockyard.kube``, never the reverse (not even a lazy import)."""

from __future__ import annotations

import ast
from pathlib import Path

import lockyard.kube


def imported_modules(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_lockyard_kube_never_imports_the_mirror() -> None:
    package = Path(lockyard.kube.__file__).parent
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith("lockyard.mirror"))
        for path in package.glob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
    assert len(offenders) >= 10  # the whole package was read
