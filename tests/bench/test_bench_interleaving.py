"""The bench's interleaved timing: each op takes its turn call by call, first place alternating."""

from __future__ import annotations

from lockyard_dev.bench.stats import Op, time_interleaved


async def test_ops_take_turns_and_each_gets_its_own_sample() -> None:
    calls: list[tuple[str, int]] = []

    def recorder(name: str) -> Op:
        async def op(i: int, task: int) -> None:
            calls.append((name, i))

        return op

    samples = await time_interleaved([recorder("a"), recorder("b")], 4, max_seconds=60)

    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert [sample.ops for sample in samples] == [4, 4]
    assert all(len(sample.latencies_ns) == 4 for sample in samples)
    assert all(sample.wall_ns == sum(sample.latencies_ns) for sample in samples)


async def test_the_time_cap_stops_every_op_after_the_same_round() -> None:
    async def op(i: int, task: int) -> None:
        return None

    samples = await time_interleaved([op, op, op], 10_000, max_seconds=0)

    assert [sample.ops for sample in samples] == [1, 1, 1]
