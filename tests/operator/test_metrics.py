"""The metrics endpoint speaks the Prometheus text format."""

from __future__ import annotations

import aiohttp

from lockyard_dev.servers.process import free_port
from lockyard_operator.metrics import Metrics, MetricsServer


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
