"""Leader-election hand-over and observation latency, per backend (issue 16, item 7).

Three measurements on one store, each over a few samples:

- ``resign``: from ``resign()`` returning to the next (queued) candidate leading;
- ``killed``: from a leader's death to the next candidate leading. The leader stops renewing
  right after it won (as a killed process does), so the wait is its whole lease: reported as
  the time past the lease's end (``killed_past_lease``), which is what the backend adds;
- ``observe``: from ``resign()`` returning to an observer on a second connection yielding the
  new leader's ``elected`` (release signals where the backend has them, polls otherwise).

The reference point is client-go's leader election with its defaults (15 s lease, 10 s renew
deadline, 2 s retry period): candidates retry every 2 s, so a hand-over after a release takes
up to 2 s (about 1 s on average), and after a leader's death up to the 15 s lease plus 2 s.

``python -m lockyard_dev.bench.elections URL [URL...]`` prints the table; ``make bench`` runs
the same through the ``elections`` scenario's probe.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import lockyard
from lockyard.connection import Connection
from lockyard_dev.bench.stats import percentile

RESIGN_SAMPLES = 20
KILLED_SAMPLES = 5
OBSERVE_SAMPLES = 20
#: The killed leader's lease: short, so the samples take seconds.
KILLED_TTL_S = 0.5
#: Time for a candidate's first attempt to reach the backend before the leader steps down.
QUEUE_JOIN_S = 0.1
#: client-go's defaults, the reference column.
CLIENT_GO = {"lease_s": 15.0, "renew_deadline_s": 10.0, "retry_period_s": 2.0}


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(seconds * 1000 for seconds in samples)
    return {"p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99)}


async def resign_handover(ly: Connection, samples: int = RESIGN_SAMPLES) -> list[float]:
    name = f"bench-resign-{uuid.uuid4().hex[:6]}"
    leader = await ly.elections.campaign(name, "leader-0", ttl=30)
    took = []
    for index in range(samples):
        successor = asyncio.ensure_future(ly.elections.campaign(name, f"leader-{index + 1}", 30))
        await asyncio.sleep(QUEUE_JOIN_S)
        await leader.resign()
        resigned = time.perf_counter()
        leader = await successor
        took.append(time.perf_counter() - resigned)
    await leader.resign()
    return took


async def killed_handover(ly: Connection, samples: int = KILLED_SAMPLES) -> list[float]:
    """Seconds past the dead leader's lease end until the next candidate leads."""
    name = f"bench-killed-{uuid.uuid4().hex[:6]}"
    past = []
    for index in range(samples):
        started = time.perf_counter()
        dead = await ly.elections.campaign(name, f"dead-{index}", KILLED_TTL_S, auto_renew=False)
        lease_end = started + KILLED_TTL_S
        successor = await ly.elections.campaign(name, f"next-{index}", ttl=30)
        past.append(time.perf_counter() - lease_end)
        await dead.resign()
        await successor.resign()
    return past


async def observe_latency(
    ly: Connection, watcher: Connection, samples: int = OBSERVE_SAMPLES
) -> list[float]:
    name = f"bench-observe-{uuid.uuid4().hex[:6]}"
    took = []
    async with watcher.elections.observe(name) as changes:
        leader = await ly.elections.campaign(name, "leader-0", ttl=30)
        async for change in changes:
            if change.kind == "elected":
                break
        for index in range(samples):
            successor = asyncio.ensure_future(
                ly.elections.campaign(name, f"leader-{index + 1}", 30)
            )
            await asyncio.sleep(QUEUE_JOIN_S)
            await leader.resign()
            resigned = time.perf_counter()
            async for change in changes:
                if change.kind == "elected":
                    took.append(time.perf_counter() - resigned)
                    break
            leader = await successor
        await leader.resign()
    return took


async def measure(ly: Connection, watcher: Connection) -> dict[str, float]:
    """Every measurement, as flat metrics (milliseconds)."""
    metrics: dict[str, float] = {}
    for label, samples in (
        ("resign", await resign_handover(ly)),
        ("killed_past_lease", await killed_handover(ly)),
        ("observe", await observe_latency(ly, watcher)),
    ):
        for key, value in _ms(samples).items():
            metrics[f"{label}_{key}"] = value
    return metrics


async def probe(ly: Connection) -> dict[str, float]:
    """The ``elections`` scenario's probe: a second connection to the same store observes
    (memory: the same connection, since its state lives in one)."""
    if ly.backend == "memory":
        return await measure(ly, ly)
    async with lockyard.connect(ly.config) as watcher:
        return await measure(ly, watcher)


async def _main(urls: list[str]) -> None:
    reference = (
        f"client-go defaults: lease {CLIENT_GO['lease_s']:g} s, renew deadline "
        f"{CLIENT_GO['renew_deadline_s']:g} s, retry {CLIENT_GO['retry_period_s']:g} s: "
        "hand-over after a release up to 2000 ms, after a death up to 15 s + 2000 ms"
    )
    print(reference)
    print(f"{'backend':<16}{'metric':<28}{'p50 ms':>10}{'p99 ms':>10}")
    for url in urls:
        async with lockyard.connect(url) as ly:
            metrics = await probe(ly)
            await ly.store.purge()
        for label in ("resign", "killed_past_lease", "observe"):
            p50, p99 = metrics[f"{label}_p50_ms"], metrics[f"{label}_p99_ms"]
            print(f"{ly.backend:<16}{label:<28}{p50:>10.1f}{p99:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="Lockyard URLs (with a prefix of their own)")
    asyncio.run(_main(parser.parse_args().urls))


if __name__ == "__main__":
    main()
