"""The linearizability checker (tools/porcupine) on small hand-made histories.

Each history is written with :class:`~lockyard_dev.jepsen.history.HistoryWriter`'s format and
explicit times, so the verdicts do not depend on timing. The checker must accept what a
linearizable store could have produced (including operations whose outcome is unknown) and
reject the rest with a small failing sub-history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockyard_dev.jepsen.checker import ILLEGAL, OK, Verdict, check_history

MS = 1_000_000


class History:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._n = 0

    def op(
        self,
        process: int,
        key: str,
        model: str,
        f: str,
        args: dict[str, Any],
        call_ms: int,
        ret_ms: int,
        result: dict[str, Any] | None,
    ) -> None:
        """``result`` None: the outcome is unknown (``info``)."""
        self._n += 1
        op_id = f"t-{self._n}"
        self.events.append(
            {
                "type": "invoke",
                "process": process,
                "id": op_id,
                "key": key,
                "model": model,
                "f": f,
                "args": args,
                "time": call_ms * MS,
            }
        )
        done: dict[str, Any] = {"type": "info" if result is None else "ok", "process": process}
        done |= {"id": op_id, "time": ret_ms * MS}
        if result is not None:
            done["result"] = result
        self.events.append(done)

    def check(self, folder: Path) -> Verdict:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "history.jsonl"
        ordered = sorted(self.events, key=lambda e: e["time"])
        path.write_text("".join(json.dumps(e) + "\n" for e in ordered))
        return check_history(path, folder / "out", timeout_s=20, minimize_s=10)


def test_a_stale_read_is_rejected_with_the_two_operations_that_show_it(tmp_path: Path) -> None:
    h = History()
    for i in range(20):  # noise the witness must leave out
        h.op(1, "k", "kv", "get", {}, i * 10, i * 10 + 5, {"value": None})
    h.op(0, "k", "kv", "set", {"value": "a"}, 300, 310, {})
    h.op(1, "k", "kv", "get", {}, 320, 330, {"value": None})
    verdict = h.check(tmp_path)
    assert verdict.verdict == ILLEGAL
    [violation] = verdict.violations
    assert violation.key == "k"
    lines = [line for line in violation.text.splitlines() if " ms " in line]
    assert len(lines) == 2
    assert 'set("a") -> ok' in violation.text
    assert "get() -> None" in violation.text
    assert violation.html is not None
    assert Path(violation.html).read_text().lower().startswith("<!doctype html")


def test_a_timed_out_write_may_have_happened_or_not(tmp_path: Path) -> None:
    h = History()
    h.op(0, "k", "kv", "set", {"value": "a"}, 0, 1000, None)
    h.op(1, "k", "kv", "get", {}, 100, 110, {"value": None})
    h.op(1, "k", "kv", "get", {}, 200, 210, {"value": "a"})
    h.op(2, "c", "kv", "increment", {"delta": 2}, 0, 1000, None)
    h.op(3, "c", "kv", "increment", {"delta": 1}, 300, 310, {"value": 3})
    verdict = h.check(tmp_path)
    assert verdict.verdict == OK
    assert verdict.unknown_outcomes == 2


def test_a_lost_increment_is_rejected(tmp_path: Path) -> None:
    h = History()
    h.op(0, "c", "kv", "increment", {"delta": 1}, 0, 10, {"value": 1})
    h.op(1, "c", "kv", "increment", {"delta": 1}, 20, 30, {"value": 1})
    assert h.check(tmp_path).verdict == ILLEGAL


def _acquire(h: History, p: int, owner: str, t: int, result: dict[str, Any] | None) -> None:
    h.op(p, "L", "lock", "acquire", {"owner": owner, "ttl_ms": 1000}, t, t + 5, result)


@pytest.mark.parametrize(
    ("takeover_ms", "token", "expected"),
    [
        (600, 2, ILLEGAL),  # during the first holder's 1 s lease
        (1100, 2, OK),  # after it
        (1100, 1, ILLEGAL),  # after it, but with a token already handed out
    ],
)
def test_a_lock_is_taken_over_only_after_its_lease_with_a_higher_token(
    tmp_path: Path, takeover_ms: int, token: int, expected: str
) -> None:
    h = History()
    _acquire(h, 0, "a", 0, {"token": 1})
    _acquire(h, 1, "b", takeover_ms, {"token": token})
    assert h.check(tmp_path).verdict == expected


def test_an_extension_moves_the_lease_and_a_release_frees_the_lock(tmp_path: Path) -> None:
    extended = History()
    _acquire(extended, 0, "a", 0, {"token": 1})
    extended.op(0, "L", "lock", "extend", {"owner": "a", "ttl_ms": 1000}, 800, 805, {"held": True})
    _acquire(extended, 1, "b", 1100, {"token": 2})
    assert extended.check(tmp_path / "extended").verdict == ILLEGAL

    released = History()
    _acquire(released, 0, "a", 0, {"token": 1})
    released.op(0, "L", "lock", "release", {"owner": "a"}, 100, 105, {"held": True})
    _acquire(released, 1, "b", 200, {"token": 2})
    _acquire(released, 2, "c", 300, {"busy": True})
    assert released.check(tmp_path / "released").verdict == OK


def test_busy_needs_a_holder_that_may_be_live(tmp_path: Path) -> None:
    free = History()
    _acquire(free, 0, "a", 0, {"token": 1})
    free.op(0, "L", "lock", "release", {"owner": "a"}, 100, 105, {"held": True})
    _acquire(free, 1, "b", 200, {"busy": True})
    assert free.check(tmp_path / "free").verdict == ILLEGAL

    # A timed-out acquire may have taken the lock: "busy" is explained.
    maybe = History()
    _acquire(maybe, 0, "a", 0, None)
    _acquire(maybe, 1, "b", 200, {"busy": True})
    assert maybe.check(tmp_path / "maybe").verdict == OK
