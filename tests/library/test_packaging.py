"""The shape of the distribution: two import packages, a pinned public surface."""

from __future__ import annotations

import importlib
import operator
import sys
from pathlib import Path

import lockyard

ROOT = Path(__file__).resolve().parents[2]

PUBLIC_API = [
    "BackendConnectionError",
    "BackendError",
    "CasResult",
    "ConfigError",
    "Connection",
    "DistributedLock",
    "Duration",
    "Guarantees",
    "InvalidKeyError",
    "KeyKind",
    "KeyLike",
    "LockExpiredError",
    "LockGuard",
    "LockInfo",
    "LockLostError",
    "LockTimeoutError",
    "OperationTimeoutError",
    "SerializationError",
    "StateError",
    "StateKey",
    "StateStore",
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


def test_importing_the_core_loads_no_driver() -> None:
    for module in list(sys.modules):
        if module.startswith("lockyard.backends.") and module != "lockyard.backends.memory":
            continue
    drivers = {"redis", "asyncpg", "aioboto3", "kopf", "kubernetes"}
    code = (
        "import sys, lockyard, lockyard.config; "
        f"print(sorted(m for m in {sorted(drivers)!r} if m in sys.modules))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_py_typed_ships_with_both_packages() -> None:
    assert (ROOT / "library" / "lockyard" / "py.typed").exists()
    assert (ROOT / "operator" / "lockyard_operator" / "py.typed").exists()
