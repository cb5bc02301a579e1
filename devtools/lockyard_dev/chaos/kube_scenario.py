"""What every Kubernetes chaos scenario run holds, and how one is run to its figures."""

from __future__ import annotations

import contextlib
from typing import ClassVar

from lockyard_dev.chaos.cluster import Cluster
from lockyard_dev.chaos.kube_result import KubeChaosResult, KubeChaosSettings


class ScenarioRun:
    """One run of a scenario: the cluster, its settings, an exit stack and the figures.

    Subclasses name themselves, describe their fault and implement :meth:`run`;
    :meth:`run_on` gives the scenario registry one signature for all of them.
    """

    name: ClassVar[str]

    def __init__(
        self, cluster: Cluster, settings: KubeChaosSettings, stack: contextlib.AsyncExitStack
    ) -> None:
        self.cluster = cluster
        self.api = cluster.api
        self.settings = settings
        #: Everything the run starts is closed through this, whatever happens.
        self.stack = stack
        self.result = KubeChaosResult(self.name, self.describe(settings), settings)
        self.checks = self.result.checks
        self.folder = cluster.workdir / self.name
        self.folder.mkdir(exist_ok=True)
        #: The run's own namespace, created by :meth:`run`.
        self.namespace = ""

    @staticmethod
    def describe(settings: KubeChaosSettings) -> str:
        raise NotImplementedError

    async def run(self) -> None:
        raise NotImplementedError

    @classmethod
    async def run_on(cls, cluster: Cluster, settings: KubeChaosSettings) -> KubeChaosResult:
        """Run the scenario on ``cluster`` (see its module docstring); its figures."""
        async with contextlib.AsyncExitStack() as stack:
            scenario = cls(cluster, settings, stack)
            await scenario.run()
        return scenario.result
