"""Who Lockyard's objects are in the Kubernetes API: the StateStore resource and its labels.

A leaf: it imports nothing, so the CLI, the mirror, the CRD models and the operator all take
these names from here without paying for pydantic or the ``kubernetes`` client.
"""

#: The StateStore custom resource (``lockyard.dev/v1alpha1``, ``statestores``).
API_GROUP = "lockyard.dev"
API_VERSION = "v1alpha1"
KIND = "StateStore"
PLURAL = "statestores"
SINGULAR = "statestore"
SHORT_NAMES = ("lystore",)
CRD_NAME = f"{PLURAL}.{API_GROUP}"

#: Label on every object made for a store (binding Secret, Role, mirrored Leases); its value is
#: ``lockyard.kube.names.store_label_value(store)``.
STORE_LABEL = "lockyard.dev/store"
#: Label (and value) on every Lease that mirrors a lock; the CLI and the reaper select on it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "lockyard"
#: Start of the name of a store's binding Secret and workload Role.
STORE_OBJECT_PREFIX = "lockyard-store-"
#: Lock names under this prefix belong to ``lockyard.elections`` (leading election ``N`` is
#: holding the lock ``election/N``); the CLI shows their Leases as KIND ``election``.
ELECTION_LOCK_PREFIX = "election/"
