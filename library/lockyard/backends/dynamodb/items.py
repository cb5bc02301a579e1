"""How the DynamoDB backend keeps values in items: attribute values, a value's two forms
(``n`` for a counter, ``v`` for anything else), and liveness by the ``exp_ms`` deadline."""

from __future__ import annotations

from typing import Any, TypeAlias

from lockyard.errors import BackendError, StateError
from lockyard.store import checked_sum, counter_value, parse_counter

from . import layout

AttributeValue: TypeAlias = dict[str, Any]
Item: TypeAlias = dict[str, AttributeValue]
Response: TypeAlias = dict[str, Any]


def as_s(text: str) -> AttributeValue:
    return {"S": text}


def as_n(number: int) -> AttributeValue:
    return {"N": str(number)}


def int_of(item: Item, name: str) -> int:
    return int(item[name]["N"])


def value_form(value: str) -> tuple[str, Item]:
    """Which attribute holds ``value`` (``"n"`` for a counter, else ``"v"``) and its content."""
    number = counter_value(value)
    if number is None:
        return "v", {layout.VALUE: as_s(value)}
    return "n", {layout.NUMBER: as_n(number)}


def refused_increment(old: Item, key: str, delta: int) -> StateError:
    """Why ``INCREMENTABLE`` was false for the live item ``old`` (its state at that moment).

    Always an error, never a reason to retry: the condition refused this very item, so another
    round could only fail the same way. (Deciding here by a grammar other than the condition's
    once made increments of ``str(2**63)`` loop until "kept racing concurrent writers".)
    """
    try:
        checked_sum(parse_counter(value_of(old), key), delta, key)
    except StateError as exc:
        return exc
    # A counter's spelling kept as a string: lockyard stores counters as n only.
    return BackendError(
        f"dynamodb: item {old.get(layout.PK)} keeps the counter {value_of(old)!r} as a string: "
        "it was not written by lockyard"
    )


def value_of(item: Item) -> str:
    """The logical value of a data item: ``v`` when present (exact spelling), else ``n``."""
    if layout.VALUE in item:
        text: str = item[layout.VALUE]["S"]
        return text
    if layout.NUMBER in item:
        return str(int_of(item, layout.NUMBER))
    raise BackendError(f"item {item.get(layout.PK)} has no value: it was not written by lockyard")


def is_live(item: Item, now_ms: int) -> bool:
    return layout.EXPIRES_MS not in item or int_of(item, layout.EXPIRES_MS) > now_ms
