"""`make demo` end to end: its own control plane, Redis, the operator, a workload; bounded by
--seconds, and stopped cleanly by Ctrl-C.

Host processes (``--host-processes``): the fallback a machine without root or cgroups runs, which
needs only the control plane; the demo with the operator and the workload as pods on a node is
tests/node/test_node_demo.py."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# -X faulthandler: a demo that does not stop is sent SIGABRT and prints where each thread is.
DEMO = [sys.executable, "-X", "faulthandler", "-m", "lockyard_dev.demo", "--host-processes"]


async def run_demo(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *DEMO, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


async def test_demo_runs_end_to_end_for_a_bounded_time() -> None:
    demo = await run_demo("--seconds", "12", "--show-every", "4")
    try:
        out, _ = await asyncio.wait_for(demo.communicate(), 300)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    text = out.decode()
    print(text)  # shown with a failure: the demo's whole story
    assert demo.returncode == 0, text
    for line in [
        "demo: control plane ready at",
        "demo: Redis ready on 127.0.0.1:",
        "demo: StateStore lockyard-demo/orders is Ready",
        "demo: workload connected to redis; mirroring locks into Leases",
        "$ kubectl get statestores -n lockyard-demo",
        "$ kubectl get leases -n lockyard-demo -l app.kubernetes.io/managed-by=lockyard",
        "$ lockyard locks -A --verify",
        "demo: stopping the operator",
        "demo: stopping the control plane",
        "demo: done; everything it started is stopped",
    ]:
        assert line in text, f"{line!r} missing from:\n{text}"
    assert "lockyard-orders-invoice-" in text  # Leases shown by kubectl
    # And by lockyard locks -A --verify: a lock the backend says is held, with its Lease
    # ("held") or before the mirror has written it ("missing (no Lease)", as the CLI always
    # prints it: the bare word never matched, and a loaded run with no "held" row failed).
    held = re.search(
        r"^lockyard-demo +orders +lock +invoice-\d .* (held|missing \(no Lease\))$", text, re.M
    )
    assert held, text
    assert "'failed': 0" in text  # the mirror's counters
    assert_telemetry_shown(text)


def assert_telemetry_shown(text: str) -> None:
    """The telemetry view's tables: the workload's OpenTelemetry metrics and the operator's
    gauges for the store (devtools/lockyard_dev/demo/telemetry_view.py)."""
    assert "telemetry at the end: Lockyard's OpenTelemetry metrics" in text, text
    acquisitions = re.findall(r"^  lockyard\.lock\.acquisitions +(\d+)$", text, re.M)
    assert acquisitions, text
    assert int(acquisitions[-1]) > 0, text
    assert re.search(r"^  lockyard\.lock\.wait\.duration p50 +[\d.]+ ms \(n=\d+\)$", text, re.M)
    assert re.search(r"^  lockyard\.operation\.duration p50 +acquire [\d.]+ ms", text, re.M)
    store = '{namespace="lockyard-demo",name="orders"}'
    assert re.search(rf"^  lockyard_operator_locks_held{re.escape(store)} \d+$", text, re.M)
    lags = re.findall(
        rf"^  lockyard_operator_lease_mirror_lag_seconds{re.escape(store)} (\S+)$", text, re.M
    )
    assert lags, text
    assert all(math.isfinite(float(lag)) and float(lag) >= 0 for lag in lags), lags


STOP_TIMEOUT_S = 120


def descendants(pid: int) -> list[str]:
    """``ps`` lines (pid first) of every process below ``pid`` (an exited demo's orphans keep
    their session, so the session is searched too): what would hold the output pipe open."""
    table = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,sid=,etimes=,args="], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    rows = [line.split(None, 4) for line in table if len(line.split(None, 4)) == 5]
    below, grew = {str(pid)}, True
    while grew:
        grew = False
        for row in rows:
            if row[0] not in below and (row[1] in below or row[2] == str(pid)):
                below.add(row[0])
                grew = True
    return [" ".join(row) for row in rows if row[0] in below and row[0] != str(pid)]


def kill_all(lines: list[str]) -> None:
    """SIGKILL what a failed demo left running, so it cannot disturb the tests after it."""
    for line in lines:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


async def test_ctrl_c_stops_everything_it_started() -> None:
    demo = await run_demo("--show-every", "30")
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(300):
            while True:
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo ended early:\n" + "".join(seen)
                seen.append(line)
                if "Ctrl-C stops" in line:
                    break
        demo.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                while line := (await demo.stdout.readline()).decode():
                    seen.append(line)
                await demo.wait()
        except TimeoutError:
            running = descendants(demo.pid)
            demo.send_signal(signal.SIGABRT)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    seen.append((await demo.stdout.read()).decode(errors="replace"))
            kill_all(running)
            pytest.fail(
                f"the demo did not stop within {STOP_TIMEOUT_S} s of Ctrl-C; what it started "
                f"and still ran:\n{chr(10).join(running) or '(nothing)'}\n"
                "what it printed (its threads at the end):\n" + "".join(seen)
            )
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    text = "".join(seen)
    assert demo.returncode == 130, text
    for line in ["demo: stopping the workload", "demo: stopping the operator",
                 "demo: stopping Redis", "demo: stopping the control plane",
                 "demo: interrupted; everything it started is stopped"]:  # fmt: skip
        assert line in text, f"{line!r} missing from:\n{text}"
