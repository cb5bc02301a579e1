"""Telemetry is off (a fast path) until a provider exists, on once one does, and the same
through the blocking API."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from telemetry_sdk import Sdk

import lockyard
import lockyard.sync
from lockyard.telemetry.state import active


async def test_without_a_provider_the_hooks_hand_back_the_undecorated_coroutines() -> None:
    assert active() is None
    async with lockyard.connect("memory://?prefix=off") as ly:
        runner = ly.store._run
        get = runner("get", ly.store._get("ns:acme:state:k"))
        assert get.cr_code.co_name == "_call"  # the runner's own body, no telemetry frame
        assert await get is None
        acquire = ly.locks.acquire("off", 5, timeout=1)
        assert acquire.cr_code.co_name == "acquire"
        guard = await acquire
        release = guard.release()
        assert release.cr_code.co_name == "release"
        await release


def test_a_global_sdk_installed_after_connecting_is_picked_up() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import lockyard
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        async def main():
            async with lockyard.connect("memory://?prefix=late") as ly:
                await ly.store.get("ns:acme:state:before")
                reader = InMemoryMetricReader()
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                await ly.store.get("ns:acme:state:after")
                guard = await ly.locks.acquire("late", 5, timeout=1)
                await guard.release()
            for resource in reader.get_metrics_data().resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        print(metric.name)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    emitted = set(done.stdout.split())
    assert {"lockyard.operation.duration", "lockyard.lock.acquisitions"} <= emitted


def test_the_blocking_api_emits_the_same(sdk: Sdk) -> None:
    with lockyard.sync.connect("memory://?prefix=sync") as ly:
        with ly.locks.hold("sync-lock", 5) as guard:
            ly.store.set("ns:acme:state:k", "v")
        assert guard.released
        assert ly.locks.try_acquire("sync-lock", 5) is not None
    assert sum(p.value for p in sdk.points("lockyard.lock.acquisitions")) == 2
    operations = {
        p.attributes["db.operation.name"] for p in sdk.points("lockyard.operation.duration")
    }
    assert {"acquire", "try_acquire", "set", "release"} <= operations
    finished = sdk.spans.get_finished_spans()
    assert {"lockyard.lock.acquire", "lockyard.lock.hold", "set"} <= {s.name for s in finished}
    # The thread's block runs inside the hold span, as an async block does.
    [hold] = [
        s
        for s in finished
        if s.name == "lockyard.lock.hold" and s.attributes["lockyard.lock.end"] == "released"
    ]
    [write] = [s for s in finished if s.name == "set"]
    assert write.parent is not None
    assert write.parent.span_id == hold.context.span_id
