"""The counter grammar of ``increment`` as the core parses it (memory, DynamoDB's value forms and
every backend's error): a value is a counter exactly when it is ``str(n)`` for a signed 64-bit
``n``. The backends' own server-side checks are compared with this in
``tests/properties/test_counter_edges.py``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockyard import SerializationError
from lockyard.store import (
    COUNTER_MAX_LENGTH,
    COUNTER_RULE,
    INT64_MAX,
    INT64_MIN,
    checked_sum,
    counter_value,
    parse_counter,
)


def canonical_int64(text: str) -> int | None:
    """The reference: what ``str()`` of an int64 gives, read back, and nothing else."""
    try:
        number = int(text)
    except ValueError:
        return None
    return number if str(number) == text and INT64_MIN <= number <= INT64_MAX else None


@given(st.integers(min_value=INT64_MIN - 3, max_value=INT64_MAX + 3))
def test_the_decimal_of_an_integer_is_a_counter_exactly_within_int64(number: int) -> None:
    expected = number if INT64_MIN <= number <= INT64_MAX else None
    assert counter_value(str(number)) == expected


@given(
    st.one_of(
        st.text(max_size=25),
        st.text(alphabet="0123456789-+ _\n\t.e\u0663\uff17", max_size=22),
        st.integers(INT64_MIN, INT64_MAX).map(lambda n: f" {n}"),
        st.integers(INT64_MIN, INT64_MAX).map(lambda n: f"0{n}"),
        st.integers(INT64_MIN, INT64_MAX).map(lambda n: f"+{n}"),
    )
)
def test_any_text_is_a_counter_only_in_its_canonical_spelling(text: str) -> None:
    assert counter_value(text) == canonical_int64(text)


@pytest.mark.parametrize(
    "text", ["-0", "+0", "00", "-", "", " 7", "7 ", "7\n", "1_000", "\u0663", "1" * 5000]
)
def test_other_spellings_raise_naming_the_key_and_the_rule(text: str) -> None:
    with pytest.raises(SerializationError) as raised:
        parse_counter(text, "ns:t:counter:c")
    assert "'ns:t:counter:c'" in str(raised.value)
    assert COUNTER_RULE in str(raised.value)


def test_the_edges_of_int64() -> None:
    assert parse_counter(str(INT64_MAX), "k") == INT64_MAX
    assert parse_counter(str(INT64_MIN), "k") == INT64_MIN
    assert len(str(INT64_MIN)) == COUNTER_MAX_LENGTH
    assert checked_sum(INT64_MAX, INT64_MIN, "k") == -1
    with pytest.raises(SerializationError, match="overflows"):
        checked_sum(INT64_MAX, 1, "k")
    with pytest.raises(SerializationError, match="overflows"):
        checked_sum(INT64_MIN, -1, "k")
