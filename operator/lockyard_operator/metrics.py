"""Prometheus metrics in the text exposition format, served by aiohttp (a kopf dependency).

A handful of series do not justify ``prometheus_client``: counters and gauges keyed by label
values, rendered on request. Series of a deleted store are dropped (``forget``).

| metric | type | labels |
|---|---|---|
| ``lockyard_operator_reconciliations_total`` | counter | ``result`` (a reason, or ``Reconciled``) |
| ``lockyard_operator_probes_total`` | counter | ``namespace``, ``name``, ``result`` |
| ``lockyard_operator_probe_latency_seconds`` | gauge | ``namespace``, ``name`` |
| ``lockyard_operator_backend_up`` | gauge | ``namespace``, ``name`` |
| ``lockyard_operator_locks_held`` | gauge | ``namespace``, ``name`` |
| ``lockyard_operator_lease_mirror_lag_seconds`` | gauge | ``namespace``, ``name`` |
| ``lockyard_operator_locks_unmirrored`` | gauge | ``namespace``, ``name`` |

What each measures, and when it is updated: docs/operator.md ("Metrics").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

LabelValues = tuple[str, ...]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Metric:
    """One metric family: a name, a type, label names and a value per label-value tuple."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    values: dict[LabelValues, float] = field(default_factory=dict)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def set(self, *label_values: str, value: float) -> None:
        self.values[label_values] = value

    def remove_matching(self, prefix: LabelValues) -> None:
        for key in [k for k in self.values if k[: len(prefix)] == prefix]:
            del self.values[key]

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for label_values, value in sorted(self.values.items()):
            pairs = ",".join(
                f'{k}="{_escape(v)}"' for k, v in zip(self.labels, label_values, strict=True)
            )
            yield f"{self.name}{{{pairs}}} {value:g}" if pairs else f"{self.name} {value:g}"


class Metrics:
    """The operator's metrics; every method returns at once (no I/O)."""

    def __init__(self) -> None:
        self.reconciliations = Metric(
            "lockyard_operator_reconciliations_total",
            "counter",
            "Reconciliations of StateStores, by result (Reconciled, or the failure reason).",
            ("result",),
        )
        self.probes = Metric(
            "lockyard_operator_probes_total",
            "counter",
            "Backend probes per StateStore, by result.",
            ("namespace", "name", "result"),
        )
        self.probe_latency = Metric(
            "lockyard_operator_probe_latency_seconds",
            "gauge",
            "Round trip of the last successful backend ping per StateStore.",
            ("namespace", "name"),
        )
        self.backend_up = Metric(
            "lockyard_operator_backend_up",
            "gauge",
            "1 if the last probe reached the StateStore's backend, else 0.",
            ("namespace", "name"),
        )
        self.locks_held = Metric(
            "lockyard_operator_locks_held",
            "gauge",
            "Locks held in the StateStore at the last probe.",
            ("namespace", "name"),
        )
        self.mirror_lag = Metric(
            "lockyard_operator_lease_mirror_lag_seconds",
            "gauge",
            "How far the most outdated mirrored Lease of a held lock trailed the backend's latest "
            "renewal at the last reaper pass (leaseMirroring stores only).",
            ("namespace", "name"),
        )
        self.locks_unmirrored = Metric(
            "lockyard_operator_locks_unmirrored",
            "gauge",
            "Held locks with no Lease at the last reaper pass (leaseMirroring stores only).",
            ("namespace", "name"),
        )
        self._all = (
            self.reconciliations,
            self.probes,
            self.probe_latency,
            self.backend_up,
            self.locks_held,
            self.mirror_lag,
            self.locks_unmirrored,
        )

    def mirror_pass(self, namespace: str, name: str, *, unmirrored: int, lag: float) -> None:
        """What one Lease reaper pass over a store found.

        Not the held count: the pass may count semaphore permits too; the probe's is locks only.
        """
        self.locks_unmirrored.set(namespace, name, value=unmirrored)
        self.mirror_lag.set(namespace, name, value=lag)

    def forget_mirror(self, namespace: str, name: str) -> None:
        """Drop a store's mirror series (its leaseMirroring was turned off)."""
        for metric in (self.mirror_lag, self.locks_unmirrored):
            metric.remove_matching((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        for metric in self._all[1:]:
            metric.remove_matching((namespace, name))

    def render(self) -> str:
        return "\n".join(line for metric in self._all for line in metric.render()) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``port`` (all interfaces), until ``stop``."""

    def __init__(self, metrics: Metrics, port: int, host: str = "0.0.0.0") -> None:
        self._metrics = metrics
        self._port = port
        self._host = host
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._runner = runner

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render().encode(),
            content_type=None,
            headers={"Content-Type": CONTENT_TYPE},
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
