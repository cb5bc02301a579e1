"""``make chaos`` on the Kubernetes side: faults of kube-apiserver and of the operator.

The library's chaos harness (:mod:`lockyard.chaos`) breaks each backend's server; it cannot
import the operator or its control-plane harness (import-linter forbids it), so the Kubernetes
scenarios live here, and :mod:`lockyard_operator.chaos.cli` (``python -m
lockyard_operator.chaos``, what ``make chaos`` runs) runs both kinds:

- ``apiserver-restart`` (:mod:`~lockyard_operator.chaos.apiserver`): kube-apiserver stopped and
  started again while the operator reconciles and lease-mirrored workloads take locks;
- ``operator-kill`` (:mod:`~lockyard_operator.chaos.operator_kill`): the operator killed with
  SIGKILL mid-reconcile of a burst of StateStores, then restarted.

Both run on one local control plane (:mod:`~lockyard_operator.chaos.cluster`), each in a
namespace of its own, and report the figures every chaos scenario reports (operations attempted
and failed, downtime, time to recover, recovered, violations) plus their own
(:mod:`~lockyard_operator.chaos.result`).
"""
