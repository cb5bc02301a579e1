"""Keys and durations: validation and conversion, independent of any backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lockyard import InvalidKeyError, KeyKind, StateKey
from lockyard.durations import lock_ttl_to_ms, timeout_to_seconds, ttl_to_ms
from lockyard.keys import canonical_key, kind_prefix


def test_canonical_form_keeps_colons_in_the_id() -> None:
    key = StateKey.parse("ns:tenant:chain:ns:t:act-1")
    assert key == StateKey("ns", "tenant", "chain", "ns:t:act-1")
    assert str(key) == "ns:tenant:chain:ns:t:act-1"
    assert canonical_key(key) == canonical_key(str(key)) == str(key)


def test_builtin_kinds_format_as_their_strings() -> None:
    assert str(StateKey("a", "b", KeyKind.RATE_LIMIT, "x")) == "a:b:rate_limit:x"
    assert len(KeyKind) == 40
    assert KeyKind("a2a_push_dlq") is KeyKind.A2A_PUSH_DLQ


@pytest.mark.parametrize(
    ("segments", "field"),
    [
        (("", "t", "k", "i"), "namespace"),
        (("n", "", "k", "i"), "tenant"),
        (("n", "t", "", "i"), "kind"),
        (("n", "t", "k", ""), "id"),
        (("n:x", "t", "k", "i"), "namespace"),
        (("n", "t:x", "k", "i"), "tenant"),
        (("n", "t", "k:x", "i"), "kind"),
    ],
)
def test_bad_segments_name_the_field(segments: tuple[str, str, str, str], field: str) -> None:
    with pytest.raises(InvalidKeyError, match=field):
        StateKey(*segments)


def test_invalid_key_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="form"):
        canonical_key("only:three:parts")
    with pytest.raises(InvalidKeyError, match="str"):
        canonical_key(42)  # type: ignore[arg-type]


def test_kind_prefix_is_anchored_on_the_kind_segment() -> None:
    assert kind_prefix("n", "t", KeyKind.DEDUP) == "n:t:dedup:"


@pytest.mark.parametrize(
    ("ttl", "ms"),
    [
        (None, None),
        (1, 1000),
        (0.0004, 1),
        (0.0011, 2),
        (1.5, 1500),
        (timedelta(milliseconds=250), 250),
        (0.001, 1),
    ],
)
def test_ttl_in_whole_milliseconds_rounding_up(ttl: float | None, ms: int | None) -> None:
    assert ttl_to_ms(ttl) == ms


@pytest.mark.parametrize("bad", [0, -1, -0.5, timedelta(0), float("nan"), float("inf")])
def test_non_positive_or_non_finite_ttl_is_rejected(bad: float | timedelta) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ttl_to_ms(bad)


def test_ttl_types_are_checked() -> None:
    with pytest.raises(TypeError, match="ttl"):
        ttl_to_ms("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl"):
        ttl_to_ms(True)
    with pytest.raises(ValueError, match="required"):
        lock_ttl_to_ms(None)  # type: ignore[arg-type]


def test_timeouts_allow_zero_but_not_negative() -> None:
    assert timeout_to_seconds(0) == 0
    assert timeout_to_seconds(timedelta(seconds=2)) == 2
    with pytest.raises(ValueError, match="timeout"):
        timeout_to_seconds(-0.1)
