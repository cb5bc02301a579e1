"""The Lockyard operator: looks after ``StateStore`` resources (``lockyard.dev/v1alpha1``).

For each StateStore it resolves the referenced Secrets, connects to the backend, probes it,
publishes a binding Secret and a workload Role, and reports what it found in the status; on
deletion it removes the store's mirrored Leases and, if asked, purges the store's data.

Layers: ``handlers`` (kopf, thin) -> ``reconcile`` (no kopf) -> ``lockyard`` (the library).
Run it with ``lockyard-operator`` or ``python -m lockyard_operator``.
"""
