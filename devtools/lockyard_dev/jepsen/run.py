"""One Jepsen run: a backend, a scenario, several worker processes, a checked history.

The controller gives every worker proxies of its own in front of the backend (or the target's
shared ones), starts the workers at a common instant, injects the scenario's fault from a
thread, waits for the workers, merges their histories, reads the counters' final values
straight from the server, then runs the linearizability checker and the other checks. Everything
a run produced stays in its folder: the specs, each worker's history, notes and log, the merged
``history.jsonl``, and the HTML drawing of every violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lockyard_dev.jepsen.checker import Verdict, check_history
from lockyard_dev.jepsen.checks import Checks, run_checks
from lockyard_dev.jepsen.counters import counter_losses
from lockyard_dev.jepsen.history import HistoryWriter, merge, read_events
from lockyard_dev.jepsen.scenarios import Nemesis, Scenario
from lockyard_dev.jepsen.spec import STORE, TAKER, VICTIM, Schedule, WorkerSpec
from lockyard_dev.jepsen.targets import Target, launch
from lockyard_dev.jepsen.toxiproxy import Proxy, Toxiproxy, ToxiproxyServer

#: Backends on which every anomaly is a bug (Sentinel may lose writes in a failover, by design).
STRICT_BACKENDS = frozenset({"redis", "postgresql", "dynamodb", "kube"})
#: How long workers may take to start Python, import Lockyard and connect.
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RunOptions:
    duration_s: float = 20.0
    workers: int = 4
    processes: int = 3
    #: operations per second over all workers (0: as fast as they go)
    rate: float = 150.0
    op_timeout_s: float = 1.0
    lock_ttl_ms: int = 1000
    keys_per_family: int = 2
    locks: int = 2
    seed: int = 1
    check_timeout_s: float = 120.0
    minimize_s: float = 60.0
    #: extra query parameters for store URLs (``wait_replicas=1`` for Sentinel, say)
    url_params: tuple[tuple[str, str], ...] = ()


@dataclass
class RunResult:
    backend: str
    scenario: str
    run_id: str
    folder: str
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    invocations: int
    verdict: Verdict
    checks: Checks
    counters: dict[str, Any] = field(default_factory=dict)
    worker_exits: list[int] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return len(self.verdict.violations)

    @property
    def problems(self) -> list[str]:
        found = list(self.checks.problems)
        found += [f"worker exited with status {code}" for code in self.worker_exits if code]
        if self.verdict.operations == 0:
            found.append("no operation was recorded")
        if self.backend in STRICT_BACKENDS:
            found += [f"not linearizable: {v.key} ({v.model})" for v in self.verdict.violations]
            found += self.checks.fence_anomalies
            if self.counters.get("lost_units"):
                found.append(f"{self.counters['lost_units']} acknowledged counter units lost")
        return found

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = self.problems
        return data


def _new_run_id(scenario: str) -> str:
    return f"{scenario.replace('-', '')[:6]}{secrets.token_hex(3)}"


def run_scenario(
    target: Target, api: Toxiproxy, scenario: Scenario, options: RunOptions, out_root: Path
) -> RunResult:
    run_id = _new_run_id(scenario.name)
    folder = out_root / f"{target.backend}-{scenario.name}"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"jepsen-{run_id}"
    load_before = os.getloadavg()
    started = time.monotonic()
    with _client_proxies(target, api, run_id, options.workers) as by_worker:
        specs = [
            _spec(target, options, run_id, prefix, folder, w, by_worker.get(w, {}), scenario)
            for w in range(options.workers)
        ]
        nemesis_history = HistoryWriter(folder / "nemesis.jsonl", options.workers)
        stop = threading.Event()
        all_proxies = [p.name for proxies in by_worker.values() for p in proxies.values()]
        nemesis = Nemesis(
            api,
            all_proxies or list(target.shared_proxies.values()),
            {w: [p.name for p in proxies.values()] for w, proxies in by_worker.items()},
            nemesis_history,
            options.op_timeout_s,
            options.lock_ttl_ms / 1000,
            random.Random(options.seed),
            stop,
            target.failover,
        )
        workers = _start_workers(specs, folder)
        thread = None
        try:
            schedule = _schedule_when_ready(specs, workers, scenario, options)
            if scenario.fault is not None and schedule is not None:
                window = (schedule.fault_ns / 1e9, schedule.heal_ns / 1e9)
                thread = threading.Thread(
                    target=scenario.fault, args=(nemesis, *window), daemon=True
                )
                thread.start()
            grace = 4 * options.op_timeout_s + 3 * options.lock_ttl_ms / 1000 + 30
            end_s = schedule.end_ns / 1e9 if schedule is not None else time.monotonic()
            exits = _wait_workers(workers, end_s + grace)
        finally:
            for worker in workers:  # only left running when interrupted
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(10)
            stop.set()
            if thread is not None:
                thread.join(30)
            api.reset()
            nemesis_history.close()
    paths = [Path(s.history) for s in specs] + [folder / "nemesis.jsonl"]
    events = merge(paths, folder / "history.jsonl")
    notes = [n for s in specs if Path(s.notes).exists() for n in read_events(Path(s.notes))]
    counters: dict[str, Any] = {}
    if target.kind == STORE:
        counters = asyncio.run(
            counter_losses(target.direct_url(prefix), run_id, options.keys_per_family, events)
        )
    verdict = check_history(
        folder / "history.jsonl",
        folder,
        timeout_s=options.check_timeout_s,
        minimize_s=options.minimize_s,
    )
    partitioned = scenario.needs_per_client and target.kind == STORE
    checks = run_checks(run_id, events, notes, partitioned=partitioned)
    result = RunResult(
        backend=target.backend,
        scenario=scenario.name,
        run_id=run_id,
        folder=str(folder),
        seconds=round(time.monotonic() - started, 1),
        load_before=load_before,
        load_after=os.getloadavg(),
        invocations=sum(1 for e in events if e["type"] == "invoke"),
        verdict=verdict,
        checks=checks,
        counters=counters,
        worker_exits=exits,
    )
    (folder / "result.json").write_text(json.dumps(result.as_dict(), indent=1, default=str))
    return result


def _spec(
    target: Target,
    options: RunOptions,
    run_id: str,
    prefix: str,
    folder: Path,
    worker: int,
    proxies: dict[str, Proxy],
    scenario: Scenario,
) -> WorkerSpec:
    role = ""
    if scenario.needs_per_client and target.kind == STORE:
        role = {0: VICTIM, 1: TAKER}.get(worker, "")
    proxy_ports = {label: proxy.listen_port for label, proxy in proxies.items()}
    url = target.make_url(proxy_ports, prefix, options.op_timeout_s)
    if target.kind == STORE and options.url_params:
        url += "&" + urlencode(options.url_params)
    return WorkerSpec(
        worker=worker,
        url=url,
        run_id=run_id,
        processes=options.processes,
        schedule=str(folder / "schedule.json"),
        ready=str(folder / f"worker-{worker}.ready"),
        seed=options.seed * 100 + worker,
        history=str(folder / f"worker-{worker}.jsonl"),
        notes=str(folder / f"worker-{worker}.notes.jsonl"),
        rate=options.rate / options.workers,
        keys_per_family=options.keys_per_family,
        locks=options.locks if target.kind == STORE else 0,
        lock_ttl_ms=options.lock_ttl_ms,
        op_timeout_s=options.op_timeout_s,
        role=role,
        kind=target.kind,
    )


@contextlib.contextmanager
def _client_proxies(
    target: Target, api: Toxiproxy, run_id: str, workers: int
) -> Iterator[dict[int, dict[str, Proxy]]]:
    """Per worker: upstream label -> its own proxy (none when the target's are shared)."""
    by_worker: dict[int, dict[str, Proxy]] = {}
    try:
        if target.per_client:
            for w in range(workers):
                for label, port in target.upstreams.items():
                    by_worker.setdefault(w, {})[label] = api.create_proxy(
                        f"{run_id}-w{w}-{label}", port
                    )
        yield by_worker
    finally:
        for proxies in by_worker.values():
            for proxy in proxies.values():
                with contextlib.suppress(Exception):
                    api.delete_proxy(proxy.name)


def _schedule_when_ready(
    specs: list[WorkerSpec],
    workers: list[subprocess.Popen[bytes]],
    scenario: Scenario,
    options: RunOptions,
) -> Schedule | None:
    """Once every worker is connected, fix the run's times and hand them to the workers.

    Starting Python and importing Lockyard takes seconds on a loaded machine: a start time
    fixed in advance would leave the fault window before some workers began. None when a
    worker exited or never got ready (its log says why).
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not all(Path(s.ready).exists() for s in specs):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            for worker in workers:
                worker.kill()
            return None
        time.sleep(0.05)
    start = time.monotonic() + 0.2
    begin, heal = scenario.window(start, options.duration_s, options.lock_ttl_ms / 1000)
    schedule = Schedule(
        start_ns=int(start * 1e9),
        end_ns=int((start + options.duration_s) * 1e9),
        fault_ns=int(begin * 1e9),
        heal_ns=int(heal * 1e9),
    )
    schedule.dump(Path(specs[0].schedule))
    return schedule


def _start_workers(specs: list[WorkerSpec], folder: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for spec in specs:
        path = folder / f"worker-{spec.worker}.spec.json"
        spec.dump(path)
        log = (folder / f"worker-{spec.worker}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "lockyard_dev.jepsen.worker", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        log.close()
    return workers


def _wait_workers(workers: list[subprocess.Popen[bytes]], deadline: float) -> list[int]:
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            worker.kill()
            codes.append(worker.wait(10))
    return codes


def run_backend(
    backend: str, scenarios: list[Scenario], options: RunOptions, out_root: Path
) -> Iterator[RunResult]:
    """Start ``backend`` behind toxiproxy once and run each scenario on it, in turn."""
    folder = out_root / backend
    folder.mkdir(parents=True, exist_ok=True)
    with ToxiproxyServer(folder / "toxiproxy", seed=options.seed) as proxy_server:
        target = launch(backend, proxy_server.api, folder)
        try:
            for scenario in scenarios:
                if scenario.needs_per_client and not target.per_client:
                    continue
                if scenario.needs_failover and target.failover is None:
                    continue
                yield run_scenario(target, proxy_server.api, scenario, options, out_root)
        finally:
            target.close()
