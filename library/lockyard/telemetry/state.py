"""Whether telemetry is on, answered in about 100 ns, and Lockyard's instruments once it is.

Lockyard depends on the OpenTelemetry API only. Until the application installs a meter or
tracer provider (an SDK), every hook asks :func:`active` and gets ``None``: no span, no
attribute dictionary, no clock read. The API's public getters cost about 2 us each (they look
up an environment variable on every call), so the question reads the API's two module globals
that ``set_meter_provider`` and ``set_tracer_provider`` fill; both can be set only once, so once
either is, the answer is built and cached for the life of the process. If a future API drops
those globals, the public getters answer instead (slower, still correct).

:func:`configure` points Lockyard at explicit providers instead of the global ones (as
OpenTelemetry's own instrumentations take ``meter_provider=``/``tracer_provider=``).
"""

from __future__ import annotations

import os
import threading

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from lockyard.telemetry import names

try:  # the globals behind get_meter_provider() / get_tracer_provider(); see the docstring
    from opentelemetry.metrics import _internal as _metrics_globals

    _metrics_globals._METER_PROVIDER  # noqa: B018 - fail here, not on the hot path
    trace._TRACER_PROVIDER  # noqa: B018
    _FAST_PROBE = True
except (ImportError, AttributeError):  # pragma: no cover - only on an API that moved them
    _FAST_PROBE = False

#: Histogram buckets (seconds): a round trip is 0.1-10 ms; waits and holds run far longer.
OPERATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip
LOCK_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class Telemetry:
    """Lockyard's tracer and instruments, from one meter provider and one tracer provider."""

    def __init__(self, meter_provider: MeterProvider, tracer_provider: TracerProvider) -> None:
        from lockyard._version import __version__

        meter = meter_provider.get_meter(names.METER_NAME, __version__)
        self.tracer = tracer_provider.get_tracer(names.TRACER_NAME, __version__)
        unit = names.UNITS
        self.operation_duration = meter.create_histogram(
            names.OPERATION_DURATION,
            unit=unit[names.OPERATION_DURATION],
            description="Duration of one backend round trip (a store or lock operation).",
            explicit_bucket_boundaries_advisory=OPERATION_BUCKETS,
        )
        self.wait_duration = meter.create_histogram(
            names.LOCK_WAIT_DURATION,
            unit=unit[names.LOCK_WAIT_DURATION],
            description="Time an acquire or try_acquire call took (to a guard, None or an error).",
            explicit_bucket_boundaries_advisory=LOCK_BUCKETS,
        )
        self.hold_duration = meter.create_histogram(
            names.LOCK_HOLD_DURATION,
            unit=unit[names.LOCK_HOLD_DURATION],
            description="Time from a lock's acquisition to its release or loss.",
            explicit_bucket_boundaries_advisory=LOCK_BUCKETS,
        )
        self.acquisitions = meter.create_counter(
            names.LOCK_ACQUISITIONS,
            unit=unit[names.LOCK_ACQUISITIONS],
            description="Locks acquired (guards handed out).",
        )
        self.contentions = meter.create_counter(
            names.LOCK_CONTENTIONS,
            unit=unit[names.LOCK_CONTENTIONS],
            description="acquire/try_acquire calls whose first attempt found the lock taken.",
        )
        self.timeouts = meter.create_counter(
            names.LOCK_TIMEOUTS,
            unit=unit[names.LOCK_TIMEOUTS],
            description="acquire calls that raised LockTimeoutError.",
        )
        self.losses = meter.create_counter(
            names.LOCK_LOSSES,
            unit=unit[names.LOCK_LOSSES],
            description="Held locks found or declared lost before their release.",
        )
        self.breaks = meter.create_counter(
            names.LOCK_BREAKS,
            unit=unit[names.LOCK_BREAKS],
            description="break_lock calls that removed a live lock.",
        )
        self.backend_errors = meter.create_counter(
            names.BACKEND_ERRORS,
            unit=unit[names.BACKEND_ERRORS],
            description="Backend operations that failed, by error.type.",
        )
        self.held = meter.create_up_down_counter(
            names.LOCKS_HELD,
            unit=unit[names.LOCKS_HELD],
            description="Locks this process holds now (acquired, not yet released or lost).",
        )


_ACTIVE: Telemetry | None = None
_LOCK = threading.Lock()


def active() -> Telemetry | None:
    """Lockyard's instruments if a provider is installed (or configured), else ``None``."""
    current = _ACTIVE
    if current is not None:
        return current
    if _FAST_PROBE:
        if _metrics_globals._METER_PROVIDER is None and trace._TRACER_PROVIDER is None:
            return None
    elif not _sdk_installed():  # pragma: no cover - only on an API that moved the globals
        return None
    return _from_globals()


def _sdk_installed() -> bool:
    meter_provider = metrics.get_meter_provider()
    tracer_provider = trace.get_tracer_provider()
    idle_meter = isinstance(meter_provider, metrics.NoOpMeterProvider) or (
        type(meter_provider).__name__ == "_ProxyMeterProvider"
    )
    idle_tracer = isinstance(tracer_provider, trace.NoOpTracerProvider | trace.ProxyTracerProvider)
    return not (idle_meter and idle_tracer)


def _from_globals() -> Telemetry:
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is None:
            # The API's getters give proxies while a provider is unset: they start forwarding
            # when the application sets it, so instruments built now keep working.
            _ACTIVE = Telemetry(metrics.get_meter_provider(), trace.get_tracer_provider())
        return _ACTIVE


def configure(
    meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None
) -> None:
    """Emit through these providers rather than the global ones (a missing one: the global).

    ``configure()`` with no argument goes back to the global providers.
    """
    global _ACTIVE
    with _LOCK:
        if meter_provider is None and tracer_provider is None:
            _ACTIVE = None
            return
        _ACTIVE = Telemetry(
            meter_provider or metrics.get_meter_provider(),
            tracer_provider or trace.get_tracer_provider(),
        )


def _load_providers_named_in_environment() -> None:
    """``OTEL_PYTHON_*_PROVIDER`` names a provider the API loads on its first getter call."""
    if "OTEL_PYTHON_METER_PROVIDER" in os.environ:
        metrics.get_meter_provider()
    if "OTEL_PYTHON_TRACER_PROVIDER" in os.environ:
        trace.get_tracer_provider()


_load_providers_named_in_environment()
