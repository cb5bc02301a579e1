"""What a fenced write costs: ``set``/``increment``/``compare_and_swap`` with ``fence=guard``
against the same write without, on one connection, interleaved (issue 17, item 6).

Each sample is one unfenced write and one fenced write of the same kind, in alternating order,
so drift in the machine's load hits both alike; the report gives each one's p50 and p99 and the
ratio of the p50s (goal: at most 1.15 on Redis and PostgreSQL). The guard is a lock held for
the whole run; every fenced write checks its lease in the same round trip.

``python -m lockyard_dev.bench.fenced URL [URL...]`` prints the table; ``make bench`` runs the
same through the ``fenced`` scenario's probe.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import lockyard
from lockyard.connection import Connection
from lockyard.fenced_writes import Fenced
from lockyard_dev.bench.stats import percentile

SAMPLES = {"memory": 2000, "redis": 2000, "redis-sentinel": 2000, "postgresql": 1000}
DEFAULT_SAMPLES = 300
WARMUP = 50
#: The goal of the issue: fenced p50 at most this times the unfenced p50.
GOAL_RATIO = 1.15

Write = Callable[[Fenced | None], Awaitable[object]]


def group_key(group: str, kind: str, suffix: str) -> str:
    """A key of ``group``: every key naming the same ``{group}`` shares one place (on Redis
    Cluster, one slot), so one guard co-located with any of them fences them all."""
    return f"bench:fenced:{kind}:{{{group}}}-{suffix}"


def writes(ly: Connection, group: str) -> dict[str, Write]:
    """The timed writes, on keys of one ``{group}`` (so one guard can fence them on every
    backend: on Redis Cluster a fenced write's lease and key must share a slot)."""
    set_key = group_key(group, "state", "set")
    counter = group_key(group, "counter", "n")
    cas_key = group_key(group, "state", "cas")

    async def set_(fence: Fenced | None) -> object:
        await ly.store.set(set_key, "value", fence=fence)
        return None

    async def increment(fence: Fenced | None) -> object:
        return await ly.store.increment(counter, 1, fence=fence)

    async def compare_and_swap(fence: Fenced | None) -> object:
        current = await ly.store.get_versioned(cas_key)
        if current is None:  # a swap never creates a key: make the one it swaps
            await ly.store.set(cas_key, "value")
            current = await ly.store.get_versioned(cas_key)
            assert current is not None
        version = current[1]
        started = time.perf_counter()
        await ly.store.compare_and_swap(cas_key, version, "value", fence=fence)
        return time.perf_counter() - started  # only the swap is timed, not the read

    return {"set": set_, "increment": increment, "compare_and_swap": compare_and_swap}


async def _timed(write: Write, fence: Fenced | None) -> float:
    started = time.perf_counter()
    result = await write(fence)
    return result if isinstance(result, float) else time.perf_counter() - started


async def measure(ly: Connection, samples: int | None = None) -> dict[str, float]:
    """Per write kind: p50/p99 (ms) unfenced and fenced, and the p50 ratio."""
    count = samples or SAMPLES.get(ly.backend, DEFAULT_SAMPLES)
    metrics: dict[str, float] = {}
    group = f"fence-{uuid.uuid4().hex[:8]}"
    kinds = writes(ly, group)
    # The lock's lease lives beside the group's records (its name is unchanged elsewhere).
    lock = ly.colocated_name("bench-fence", group_key(group, "state", "set"))
    async with ly.locks.hold(lock, ttl=60) as guard:
        for kind, write in kinds.items():
            await write(None)  # create the key: every sample then overwrites it
            for index in range(WARMUP):
                await _timed(write, guard if index % 2 else None)
            plain: list[float] = []
            fenced: list[float] = []
            for index in range(count):
                # Alternate which goes first, so neither always follows the other.
                first, second = (None, guard) if index % 2 else (guard, None)
                took_first = await _timed(write, first)
                took_second = await _timed(write, second)
                (plain if first is None else fenced).append(took_first)
                (plain if second is None else fenced).append(took_second)
            plain.sort()
            fenced.sort()
            metrics[f"{kind}_plain_p50_ms"] = percentile(plain, 50) * 1000
            metrics[f"{kind}_plain_p99_ms"] = percentile(plain, 99) * 1000
            metrics[f"{kind}_fenced_p50_ms"] = percentile(fenced, 50) * 1000
            metrics[f"{kind}_fenced_p99_ms"] = percentile(fenced, 99) * 1000
            metrics[f"{kind}_ratio_p50"] = percentile(fenced, 50) / percentile(plain, 50)
    return metrics


async def probe(ly: Connection) -> dict[str, float]:
    """The ``fenced`` scenario's probe."""
    return await measure(ly)


async def _main(urls: list[str], samples: int | None) -> None:
    print(f"fenced write cost (goal: p50 ratio <= {GOAL_RATIO})")
    header = f"{'backend':<16}{'write':<18}{'plain p50':>10}{'fenced p50':>11}{'ratio':>7}"
    print(header + f"{'plain p99':>11}{'fenced p99':>11}")
    for url in urls:
        async with lockyard.connect(url) as ly:
            metrics = await measure(ly, samples)
            await ly.store.purge()
        for kind in ("set", "increment", "compare_and_swap"):
            m = {k.removeprefix(kind + "_"): v for k, v in metrics.items() if k.startswith(kind)}
            print(
                f"{ly.backend:<16}{kind:<18}{m['plain_p50_ms']:>10.3f}{m['fenced_p50_ms']:>11.3f}"
                f"{m['ratio_p50']:>7.2f}{m['plain_p99_ms']:>11.3f}{m['fenced_p99_ms']:>11.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="Lockyard URLs (with a prefix of their own)")
    parser.add_argument("--samples", type=int, default=None, help="pairs per write kind")
    args = parser.parse_args()
    asyncio.run(_main(args.urls, args.samples))


if __name__ == "__main__":
    main()
