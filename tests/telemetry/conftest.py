"""An OpenTelemetry SDK with in-memory readers, given to Lockyard for one test at a time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_sdk import ACL_USER, PASSWORD, Sdk

import lockyard.telemetry
from lockyard_dev.servers.redis import RedisServer


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    lockyard.telemetry.configure(meter_provider, tracer_provider)
    try:
        yield Sdk(reader, exporter)
    finally:
        lockyard.telemetry.configure()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """With a password and an ACL user: telemetry must never repeat either."""
    with RedisServer(password=PASSWORD, username=ACL_USER) as server:
        yield server
