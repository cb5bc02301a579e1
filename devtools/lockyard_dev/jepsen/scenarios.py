"""The network faults of a Jepsen run, injected with toxiproxy while the workload runs.

Every scenario but ``none`` breaks the network between ``fault_at`` and ``heal_at`` (fractions of
the run) and heals it (every toxic removed); the workload goes on before, during and after. The
operation timeout is T and the lock TTL is L:

- ``none``: no fault, the baseline.
- ``latency``: every reply delayed by 1.5 T +- 0.5 T (jitter): most operations time out on the
  client after the server applied them, and their replies arrive late on connections that may
  be reused.
- ``bandwidth``: replies trickle at 1 KB/s, so requests queue behind each other.
- ``reset-peer``: in bursts, connections are reset (``reset_peer`` after 0-50 ms) or cut after
  the next 1-200 bytes (``limit_data``), that is in the middle of a reply.
- ``half-open``: all data dropped in both directions while the connections stay open
  (``timeout`` with no limit): callers see silence, not an error; when it heals, toxiproxy
  closes the connections it held.
- ``slicer``: replies and requests cut into 1-5 byte slices with 0.2 ms between them.
- ``partition-one``: one client (worker 0) cut off as in ``half-open`` for 3 L + 1 s while the
  others go on; the lock it holds with ``hold()`` must be given up within L, another client
  takes it, and after the heal the cut-off client's stale fenced write must be refused.
- ``failover`` (Sentinel only): ``SENTINEL FAILOVER`` while clients write, as ``make chaos``
  does, so the history shows what the failover lost (by design: replication is asynchronous).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lockyard_dev.jepsen.history import HistoryWriter
from lockyard_dev.jepsen.toxiproxy import Toxiproxy


@dataclass
class Nemesis:
    """Applies toxics to proxies and records each change in the run's history."""

    api: Toxiproxy
    #: every proxy clients use; per worker (worker index -> proxy names) when clients have their own
    all_proxies: Sequence[str]
    by_worker: dict[int, list[str]]
    history: HistoryWriter
    op_timeout_s: float
    lock_ttl_s: float
    rng: random.Random
    stop: threading.Event
    #: Forces a failover (Sentinel), or None.
    failover: Callable[[], None] | None = None

    def add(
        self,
        proxies: Sequence[str],
        kind: str,
        attributes: dict[str, int | float],
        *,
        streams: Sequence[str] = ("downstream",),
        what: str,
    ) -> None:
        for proxy in proxies:
            for stream in streams:
                self.api.add_toxic(proxy, f"{kind}-{stream}", kind, attributes, stream=stream)
        self.history.nemesis(what)

    def heal(self, what: str = "heal: every toxic removed") -> None:
        self.api.reset()
        self.history.nemesis(what)

    def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic s); False if the run is stopping."""
        return not self.stop.wait(max(0.0, deadline - time.monotonic()))


#: (nemesis, fault start, heal time) -> None; times are time.monotonic() seconds.
Fault = Callable[[Nemesis, float, float], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault | None
    #: fault window as fractions of the run's duration
    fault_at: float = 0.3
    heal_at: float = 0.7
    #: needs one client with proxies of its own
    needs_per_client: bool = False
    #: needs a backend that can fail over
    needs_failover: bool = False

    def window(self, start: float, duration: float, lock_ttl_s: float) -> tuple[float, float]:
        begin = start + self.fault_at * duration
        if self.name == "partition-one":
            return begin, begin + 3 * lock_ttl_s + 1.0
        return begin, start + self.heal_at * duration


def _steady(
    kind: str,
    attributes: Callable[[Nemesis], dict[str, int | float]],
    streams: Sequence[str],
    describe: Callable[[Nemesis], str],
) -> Fault:
    def fault(nemesis: Nemesis, begin: float, end: float) -> None:
        if not nemesis.sleep_until(begin):
            return
        nemesis.add(
            nemesis.all_proxies, kind, attributes(nemesis), streams=streams, what=describe(nemesis)
        )
        nemesis.sleep_until(end)
        nemesis.heal()

    return fault


def _latency(n: Nemesis) -> dict[str, int | float]:
    return {"latency": int(1500 * n.op_timeout_s), "jitter": int(500 * n.op_timeout_s)}


def _reset_bursts(nemesis: Nemesis, begin: float, end: float) -> None:
    if not nemesis.sleep_until(begin):
        return
    while time.monotonic() < end:
        if nemesis.rng.random() < 0.5:
            wait = nemesis.rng.randint(0, 50)
            nemesis.add(
                nemesis.all_proxies,
                "reset_peer",
                {"timeout": wait},
                what=f"reset_peer after {wait} ms",
            )
        else:
            size = nemesis.rng.randint(1, 200)
            nemesis.add(
                nemesis.all_proxies,
                "limit_data",
                {"bytes": size},
                what=f"limit_data: cut after {size} bytes",
            )
        if not nemesis.sleep_until(min(end, time.monotonic() + 0.3)):
            break
        nemesis.heal("burst over")
        if not nemesis.sleep_until(min(end, time.monotonic() + nemesis.rng.uniform(0.2, 0.6))):
            break
    nemesis.heal()


def _partition_one(nemesis: Nemesis, begin: float, end: float) -> None:
    if not nemesis.sleep_until(begin):
        return
    victim = nemesis.by_worker[0]
    nemesis.add(
        victim,
        "timeout",
        {"timeout": 0},
        streams=("upstream", "downstream"),
        what="partition: worker 0 cut off (data dropped both ways)",
    )
    nemesis.sleep_until(end)
    nemesis.heal("partition healed")


def _failover(nemesis: Nemesis, begin: float, end: float) -> None:
    if not nemesis.sleep_until(begin) or nemesis.failover is None:
        return
    nemesis.history.nemesis("SENTINEL FAILOVER")
    nemesis.failover()
    nemesis.history.nemesis("failover done: every sentinel names the new master")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("none", None),
        Scenario(
            "latency",
            _steady(
                "latency",
                _latency,
                ("downstream",),
                lambda n: (
                    f"latency {_latency(n)['latency']}+-{_latency(n)['jitter']} ms on every reply"
                ),
            ),
        ),
        Scenario(
            "bandwidth",
            _steady(
                "bandwidth", lambda n: {"rate": 1}, ("downstream",), lambda n: "bandwidth 1 KB/s"
            ),
        ),
        Scenario("reset-peer", _reset_bursts),
        Scenario(
            "half-open",
            _steady(
                "timeout",
                lambda n: {"timeout": 0},
                ("upstream", "downstream"),
                lambda n: "half-open: every byte dropped both ways, connections left open",
            ),
            heal_at=0.55,
        ),
        Scenario(
            "slicer",
            _steady(
                "slicer",
                lambda n: {"average_size": 3, "size_variation": 2, "delay": 200},
                ("upstream", "downstream"),
                lambda n: "slicer: 1-5 byte slices, 0.2 ms apart",
            ),
        ),
        Scenario("partition-one", _partition_one, fault_at=0.25, needs_per_client=True),
        Scenario("failover", _failover, fault_at=0.4, needs_failover=True),
    )
}
