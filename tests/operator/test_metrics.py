"""The metrics endpoint speaks the Prometheus text format."""

from __future__ import annotations

import aiohttp
import pytest

from lockyard.locks import LockInfo
from lockyard.mirror import lease_names
from lockyard.mirror.leases import MirroredLease, format_micro_time
from lockyard_dev.servers.process import free_port
from lockyard_operator.metrics import Metrics, MetricsServer
from lockyard_operator.mirror_lag import mirror_lag


def test_render_escapes_labels_and_forgets_stores() -> None:
    metrics = Metrics()
    metrics.reconciliations.inc("Reconciled")
    metrics.reconciliations.inc("Reconciled")
    metrics.locks_held.set("ns", 'we"ird', value=3)
    metrics.probe_latency.set("ns", "other", value=0.0025)
    text = metrics.render()
    assert 'lockyard_operator_reconciliations_total{result="Reconciled"} 2' in text
    assert 'lockyard_operator_locks_held{namespace="ns",name="we\\"ird"} 3' in text
    assert "# TYPE lockyard_operator_probe_latency_seconds gauge" in text
    metrics.forget("ns", 'we"ird')
    assert "we\\" not in metrics.render()
    assert 'name="other"' in metrics.render()


async def test_server_serves_metrics() -> None:
    metrics = Metrics()
    metrics.backend_up.set("ns", "s", value=1)
    port = free_port()
    server = MetricsServer(metrics, port, host="127.0.0.1")
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'lockyard_operator_backend_up{namespace="ns",name="s"} 1' in (
                await response.text()
            )
    finally:
        await server.stop()


def test_mirror_series_are_set_per_pass_and_forgotten_with_the_store() -> None:
    metrics = Metrics()
    metrics.probes.inc("ns", "s", "ProbeSucceeded")
    metrics.locks_held.set("ns", "s", value=2)
    metrics.mirror_pass("ns", "s", unmirrored=1, lag=0.25)
    text = metrics.render()
    assert 'lockyard_operator_locks_held{namespace="ns",name="s"} 2' in text
    assert 'lockyard_operator_locks_unmirrored{namespace="ns",name="s"} 1' in text
    assert 'lockyard_operator_lease_mirror_lag_seconds{namespace="ns",name="s"} 0.25' in text
    assert "# TYPE lockyard_operator_lease_mirror_lag_seconds gauge" in text
    metrics.forget_mirror("ns", "s")
    text = metrics.render()
    assert 'lockyard_operator_locks_held{namespace="ns",name="s"} 2' in text
    assert "lockyard_operator_lease_mirror_lag_seconds{" not in text
    assert "lockyard_operator_locks_unmirrored{" not in text
    metrics.mirror_pass("ns", "s", unmirrored=0, lag=0.0)
    metrics.forget("ns", "s")
    assert 'name="s"' not in metrics.render()


def lease(renew_time: str | None, lease_ms: str | None, duration_s: int | None) -> MirroredLease:
    annotations = {lease_names.LOCK_ANNOTATION: "a", lease_names.STORE_ANNOTATION: "s"}
    if lease_ms is not None:
        annotations[lease_names.LEASE_MS_ANNOTATION] = lease_ms
    spec: dict[str, object] = {"holderIdentity": "w"}
    if renew_time is not None:
        spec["renewTime"] = renew_time
    if duration_s is not None:
        spec["leaseDurationSeconds"] = duration_s
    return MirroredLease.from_object(
        {"metadata": {"name": "x", "annotations": annotations}, "spec": spec}
    )


def test_mirror_lag_is_how_much_newer_the_backends_renewal_is() -> None:
    renewed = 1_700_000_000.0
    shown = format_micro_time(renewed)
    info = LockInfo(name="a", owner="o", fencing_token=1, expires_in_ms=9_000)
    # The backend was asked 4 s after the renewal the Lease shows, and has 9 s of a 10 s TTL
    # left: it was renewed 3 s after that one.
    assert mirror_lag(lease(shown, "10000", 10), info, renewed + 4) == pytest.approx(3.0)
    # Up to date: the same renewal on both sides (9 s left, asked 1 s after it).
    assert mirror_lag(lease(shown, "10000", 10), info, renewed + 1) == pytest.approx(0.0)
    # A Lease that seems ahead (clock skew) reads 0, never negative.
    assert mirror_lag(lease(shown, "10000", 10), info, renewed) == 0.0
    # Without the millisecond annotation the whole-second duration stands in.
    assert mirror_lag(lease(shown, None, 10), info, renewed + 4) == pytest.approx(3.0)
    assert mirror_lag(lease(None, "10000", 10), info, renewed) is None
    assert mirror_lag(lease(shown, None, None), info, renewed) is None
