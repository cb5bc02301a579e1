"""The shape of the distribution: two import packages holding only the product, a pinned
public surface."""

from __future__ import annotations

import importlib
import json
import operator
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lockyard
from lockyard_dev.repository import repository_root

ROOT = repository_root()
#: Module and package names that are development tooling (devtools/, distribution lockyard-dev).
TOOLING = {"lockyard_dev", "bench", "stress", "chaos", "servers", "controlplane", "demo"}
#: Never copied into the wheel's build tree: caches, virtualenvs and earlier build output.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)

PUBLIC_API = [
    "BackendConnectionError",
    "BackendError",
    "Campaign",
    "CasResult",
    "ConfigError",
    "Connection",
    "DistributedLock",
    "Duration",
    "Elections",
    "Fence",
    "FenceLostError",
    "FenceSlotError",
    "Guarantees",
    "HandleClosedError",
    "InvalidKeyError",
    "KeyKind",
    "KeyLike",
    "Leader",
    "Leadership",
    "LeadershipChange",
    "LockEvent",
    "LockExpiredError",
    "LockGuard",
    "LockInfo",
    "LockLostError",
    "LockTimeoutError",
    "LockUpgradeError",
    "OperationTimeoutError",
    "Permit",
    "ReadWriteGuard",
    "ReadWriteLocks",
    "SemaphoreLimitError",
    "Semaphores",
    "SerializationError",
    "StaleFenceError",
    "StateError",
    "StateKey",
    "StateStore",
    "UnexpectedReplyError",
    "__version__",
    "connect",
    "connect_store",
]


def test_public_api_is_pinned_and_sorted() -> None:
    assert lockyard.__all__ == PUBLIC_API
    assert sorted(lockyard.__all__) == lockyard.__all__
    for name in lockyard.__all__:
        assert hasattr(lockyard, name), name


def test_operator_folder_is_a_source_root_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    # The standard library's operator module must stay the one Python finds.
    assert operator.__file__ is not None
    assert "site-packages" not in operator.__file__
    assert str(ROOT / "operator") not in str(Path(operator.__file__).parent)
    importlib.import_module("lockyard_operator")


def test_importing_the_core_loads_no_driver_no_backend_and_no_tooling() -> None:
    # A fresh interpreter: this one has imported every backend for the other tests.
    code = "import json, sys, lockyard, lockyard.config; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    drivers = {"redis", "asyncpg", "aioboto3", "kopf", "kubernetes"}
    assert loaded & drivers == set()
    backends = {m for m in loaded if m.startswith("lockyard.backends.")}
    assert backends <= {"lockyard.backends.memory"}
    assert {m for m in loaded if m.split(".")[0] == "lockyard_dev"} == set()


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names inside the wheel built from this checkout, as `pip wheel` builds it.

    The build runs on a copy of the tree (setuptools writes build/ and egg-info next to the
    sources) with the backend the venv has (no index needed: setuptools is in the dev extra).
    """
    tmp = tmp_path_factory.mktemp("wheel")
    source, out = tmp / "source", tmp / "out"
    shutil.copytree(ROOT, source, ignore=BUILD_IGNORE)
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*argv, "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("lockyard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_only_the_two_product_packages(wheel_names: list[str]) -> None:
    tops = {name.split("/")[0] for name in wheel_names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {
        "lockyard",
        "lockyard_operator",
    }


def test_no_tooling_module_is_in_the_wheel(wheel_names: list[str]) -> None:
    modules = [name for name in wheel_names if name.endswith(".py")]
    assert len(modules) > 20  # the product is there: the check below looked at something
    tooling = [
        name for name in modules if TOOLING & {part.removesuffix(".py") for part in name.split("/")}
    ]
    assert tooling == []


def test_the_public_conformance_suite_and_py_typed_ship(wheel_names: list[str]) -> None:
    names = set(wheel_names)
    assert "lockyard/testing/__init__.py" in names
    assert "lockyard/py.typed" in names
    assert "lockyard_operator/py.typed" in names


def test_runtime_modules_never_name_the_tooling() -> None:
    # import-linter checks imports; this also catches a lazy import hidden in a string.
    for folder in (ROOT / "library", ROOT / "operator"):
        offenders = [
            str(path.relative_to(ROOT))
            for path in folder.rglob("*.py")
            if "lockyard_dev" in path.read_text()
        ]
        assert offenders == []
