"""What the telemetry tests share: the in-memory SDK handles and the secrets never to repeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PASSWORD = "t3lemetry pass/word"
ACL_USER = "lockyard-app"


@dataclass
class Sdk:
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[Any]:
        return [
            point
            for resource in self.metrics.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]
