"""kubectl conventions of the CLI's output helpers (no cluster needed)."""

from __future__ import annotations

import io

import pytest

from lockyard.cli._output import human_duration, remaining, render_table, use_color


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_lease_time_left_has_tenths_below_ten_seconds() -> None:
    assert remaining(4.26) == "4.3s"
    assert remaining(-1) == "0.0s"
    assert remaining(75) == "75s"


def test_tables_are_aligned_and_coloured_only_when_asked() -> None:
    rows = [["orders", ("expired", "red")], ["a-much-longer-store", "9.5s"]]
    plain = render_table(["STORE", "EXPIRES IN"], rows)
    assert plain == [
        "STORE                 EXPIRES IN",
        "orders                expired",
        "a-much-longer-store   9.5s",
    ]
    painted = render_table(["STORE", "EXPIRES IN"], rows, color=True, no_headers=True)
    assert painted[0] == "orders                \x1b[31mexpired\x1b[0m"
    assert painted[1] == "a-much-longer-store   9.5s"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(_Terminal())
    assert not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Terminal())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_color(_Terminal())
