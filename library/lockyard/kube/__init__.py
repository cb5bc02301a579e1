"""Lockyard inside Kubernetes: the binding a StateStore publishes, and opening it from a pod.

Imports the ``kubernetes`` client lazily (only ``connect_store`` through the API needs it), so
reading a mounted binding works with the library alone.
"""

from lockyard.kube.binding import BINDING_TYPE, StoreBinding, binding_data, read_binding
from lockyard.kube.names import STORE_LABEL, store_label_value, store_object_name

__all__ = [
    "BINDING_TYPE",
    "STORE_LABEL",
    "StoreBinding",
    "binding_data",
    "read_binding",
    "store_label_value",
    "store_object_name",
]
