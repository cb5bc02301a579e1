"""The Kubernetes faults ``make chaos`` injects, by name (the backend ones are
``lockyard_dev.chaos.scenarios.SCENARIOS``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lockyard_dev.chaos import apiserver, operator_kill, operator_pods
from lockyard_dev.chaos.cluster import Cluster
from lockyard_dev.chaos.kube_result import KubeChaosResult, KubeChaosSettings


@dataclass(frozen=True)
class KubeScenario:
    name: str
    run: Callable[[Cluster, KubeChaosSettings], Awaitable[KubeChaosResult]]


KUBE_SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        KubeScenario(apiserver.NAME, apiserver.ApiserverRestart.run_on),
        KubeScenario(operator_kill.NAME, operator_kill.OperatorKill.run_on),
        # The same on a node of its own, the operator as pods: needs root and cgroups.
        KubeScenario(operator_pods.NAME, operator_pods.OperatorPodKill.run_on),
    )
}
