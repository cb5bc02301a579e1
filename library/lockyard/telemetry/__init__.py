"""Lock and store telemetry through the OpenTelemetry API (metrics and traces).

Lockyard depends on ``opentelemetry-api`` only. It emits nothing, and costs next to nothing,
until the application installs an SDK (``metrics.set_meter_provider``,
``trace.set_tracer_provider``) or calls :func:`configure` with providers of its own. Instrument
names, units and attributes: ``docs/telemetry.md`` and :mod:`lockyard.telemetry.names`.
"""

from lockyard.telemetry.state import configure

__all__ = ["configure"]
