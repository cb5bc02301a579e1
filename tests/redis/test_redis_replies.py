"""The Redis reply readers: each takes its operation's one shape and refuses every other with
``UnexpectedReplyError`` naming the operation, what it expects and what came back.

(The wire fuzzer, tests/jepsen/test_wire_fuzz.py, sends such replies from a real server through
a proxy; this file pins each reader's contract, which the fuzzer's eight shapes only sample.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lockyard.backends.redis import replies
from lockyard.errors import BackendConnectionError, UnexpectedReplyError
from lockyard.store import MAX_VALUE_BYTES

Reader = Callable[[str, object], object]

TOO_LONG = "x" * (MAX_VALUE_BYTES + 1)

#: reader, replies it accepts with what it reads, replies it refuses
CASES: list[tuple[str, Reader, list[tuple[object, object]], list[object]]] = [
    (
        "get",
        replies.value,
        [(None, None), ("v", "v"), ("x" * MAX_VALUE_BYTES, "x" * MAX_VALUE_BYTES)],
        [-1, [], [1, "x", [2]], 3.5, b"raw", TOO_LONG],
    ),
    (
        "get_versioned",
        replies.versioned,
        [([None, None], None), (["v", "3"], ("v", 3))],
        [
            -1,
            [],
            None,
            "OK",
            ["v"],
            ["v", "x"],
            ["v", None],
            [None, 9],
            ["v", "0"],
            [TOO_LONG, "1"],
        ],
    ),
    ("delete", replies.flag, [(1, True), (0, False)], [2, -1, "1", None, [], True]),
    ("set", replies.new_version, [(1, 1), (7, 7)], [0, -1, "OK", None, [], 3.5]),
    (
        "increment",
        replies.counter,
        [("3", (3, "")), ("-9223372036854775808", (-(2**63), "")), (["abc"], (None, "abc"))],
        [3, "x", "9223372036854775808", "1" * 25, [], ["a", "b"], None, [1]],
    ),
    (
        "compare_and_swap",
        replies.swapped,
        [([], (False, None, 0)), ([1, 4], (True, None, 4)), ([0, "v", "2"], (False, "v", 2))],
        [-1, None, "OK", [1], [0, "v"], [2, 4], ["1", 4], [0, None, "2"], [1, 0], [0, "v", "1_0"]],
    ),
    (
        "scan_keys",
        replies.pairs,
        [([], []), (["k", "v", "k2", "v2"], [("k", "v"), ("k2", "v2")])],
        [-1, None, ["k"], ["k", 1], [1, "x", [2]], 3.5],
    ),
    (
        "scan_keys",
        replies.scanned,
        [([[], []], ([], [])), ([["k", "v"], ["gone"]], ([("k", "v")], ["gone"]))],
        [[], None, [["k", "v"]], [["k"], []], [["k", "v"], [1]], [["k", "v"], "gone"], "OK"],
    ),
    (
        "try_acquire",
        replies.acquired,
        [(250, 250), ([0, 5], (0, 5)), (["2", "7"], (2, 7))],
        ["OK", None, [], [1], [1, "x"], 3.5, [None, 1]],
    ),
    (
        "release",
        replies.handed_over,
        [(0, None), ([1, ""], ""), ([1, "next"], "next")],
        [1, None, [], [0, "x"], [1, 2], "OK"],
    ),
    (
        "holder",
        replies.lock_info,
        [([], None), (["me", 900, "0", "3"], ("me", 900, 0, 3))],
        [0, None, ["me"], ["me", "x", "0", "3"], [1, 900, "0", "3"]],
    ),
    (
        "permit_acquire",
        replies.permit_attempt,
        [(["limit", 3], replies.LimitConflict(3)), ([0, 2], (0, 2)), (40, 40)],
        [["limit", "x"], ["limit"], None, "OK"],
    ),
    (
        "permit_release",
        replies.permit_released,
        [(0, None), ([1, []], []), ([1, ["a", "b"]], ["a", "b"])],
        [1, None, [1, "a"], [1, [2]], [0, []]],
    ),
    (
        "list_held",
        replies.permit_holders,
        [(["2"], (2, [])), (["2", "o", 50, "1", "0", "9"], (2, [("o", 50, 1, 0, 9)]))],
        [[], None, ["2", "o"], ["x"], ["2", "o", 50, "1", "0", None]],
    ),
]


@pytest.mark.parametrize(("operation", "reader", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_each_reader_takes_its_shape_and_refuses_others(
    operation: str,
    reader: Reader,
    good: list[tuple[object, object]],
    bad: list[object],
) -> None:
    for reply, expected in good:
        assert reader(operation, reply) == expected
    for reply in bad:
        with pytest.raises(UnexpectedReplyError) as caught:
            reader(operation, reply)
        message = str(caught.value)
        assert message.startswith(f"redis {operation}: expected "), message
        assert ", received " in message, message
        # The outcome is unknown, as after a lost connection: callers retry or give up alike.
        assert isinstance(caught.value, BackendConnectionError)


def test_a_large_reply_is_described_not_repeated() -> None:
    with pytest.raises(UnexpectedReplyError) as caught:
        replies.value("get", "x" * (32 * 1024 * 1024))
    message = str(caught.value)
    assert "str of length 33554432" in message
    assert len(message) < 300
