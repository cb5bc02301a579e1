"""``make chaos``: the stress workload while a server, kube-apiserver or the operator is broken.

Backend scenarios (:mod:`~lockyard_dev.chaos.scenarios`, run by
:mod:`~lockyard_dev.chaos.driver`) start their backend's server, run the stress workload
(:mod:`lockyard_dev.stress.workload`) on a few connections, kill, fail over or restart the
server mid-run, keep the workload going, then read everything back. They report operations
attempted and failed, how long callers saw errors, whether every operation recovered on the same
connections, the slowest failure against the operation timeout, and the invariant violations
(:mod:`~lockyard_dev.chaos.backend_report`).

Kubernetes scenarios (:mod:`~lockyard_dev.chaos.kube_scenarios`) run on one local control plane
(:mod:`~lockyard_dev.chaos.cluster`), each in a namespace of its own:

- ``apiserver-restart`` (:mod:`~lockyard_dev.chaos.apiserver`): kube-apiserver stopped and
  started again while the operator reconciles and lease-mirrored workloads take locks;
- ``operator-kill`` (:mod:`~lockyard_dev.chaos.operator_kill`): the operator killed with
  SIGKILL mid-reconcile of a burst of StateStores, then restarted.

They report the same figures plus their own (:mod:`~lockyard_dev.chaos.kube_result`).
:mod:`~lockyard_dev.chaos.cli` (``python -m lockyard_dev.chaos``, what ``make chaos`` runs)
runs both kinds.
"""
