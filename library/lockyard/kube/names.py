"""Names of the objects the operator makes for a StateStore, shared with workloads.

Kubernetes bounds names (253 characters) and label values (63, alphanumeric at both ends); a
StateStore name that does not fit keeps its start and gets a hash of the whole, so two stores
never share a derived name.
"""

from __future__ import annotations

import hashlib

from lockyard.identity import STORE_LABEL as STORE_LABEL
from lockyard.identity import STORE_OBJECT_PREFIX

MAX_NAME = 253
MAX_LABEL_VALUE = 63
_HASH_LENGTH = 12


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{text[: limit - _HASH_LENGTH - 1].rstrip('.-')}-{digest}"


def store_object_name(store: str) -> str:
    """Name of the binding Secret and of the workload Role of StateStore ``store``."""
    return _bounded(STORE_OBJECT_PREFIX + store, MAX_NAME)


def store_label_value(store: str) -> str:
    """The ``STORE_LABEL`` value for StateStore ``store``."""
    return _bounded(store, MAX_LABEL_VALUE)
