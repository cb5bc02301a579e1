"""The public conformance suite explains a failed check as a test module would."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import lockyard.testing

MODULES = sorted(m.name for m in pkgutil.iter_modules(lockyard.testing.__path__))


@pytest.mark.parametrize("module", MODULES)
def test_every_suite_module_has_its_asserts_rewritten_by_pytest(module: str) -> None:
    loaded = importlib.import_module(f"lockyard.testing.{module}")
    # pytest's import hook loaded it: a failed `assert a <= b` shows both values, not only
    # "AssertionError" (a late timeout on a loaded run said nothing more).
    assert type(loaded.__loader__).__name__ == "AssertionRewritingHook"


def test_the_suite_modules_are_found() -> None:
    assert {"fixtures", "suite_locks", "suite_store"} <= set(MODULES)
