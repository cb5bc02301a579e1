"""Typed readers of the Redis backend's replies: every store, lock, permit and fenced operation
reads its reply through one of these, at the backend boundary.

Each reader knows the one shape its command or script returns (the script headers in
:mod:`.scripts`, :mod:`.permit_scripts` and :mod:`.fenced_scripts` state them) and raises
:class:`~lockyard.errors.UnexpectedReplyError` for anything else: another shape or type (a
reply meant for another command, a proxy or server that answers nonsense), or a value longer
than any value the store accepts (``MAX_VALUE_BYTES``; docs/backends/redis.md, *Replies*).
The checks are ``type`` tests and lengths, a few hundred nanoseconds against a round trip of
tens of microseconds.

Integers arrive as RESP integers (Lua numbers) or, where a script passes a stored field on, as
decimal strings; :func:`integer` reads both. RESP2 has no booleans, so a ``bool`` is no integer.
"""

from __future__ import annotations

from typing import NamedTuple

from lockyard.errors import UnexpectedReplyError
from lockyard.store import INT64_MAX, INT64_MIN, MAX_VALUE_BYTES

#: The longest text a reply may carry where a stored value, key or owner belongs. Measured in
#: characters, which never outnumber UTF-8 bytes, so ``len`` (constant time) bounds the bytes.
MAX_TEXT = MAX_VALUE_BYTES

#: Longest integer text read (int64 and its sign): ``int()`` never sees a long digit string.
_MAX_DIGITS = 20


def describe(reply: object) -> str:
    """A short account of a reply for an error message (never the whole of a large one)."""
    if isinstance(reply, str | bytes) and len(reply) > 40:
        return f"{type(reply).__name__} of length {len(reply)} ({reply[:20]!r}...)"
    if isinstance(reply, list):
        if len(reply) > 6:
            return f"array of {len(reply)} elements"
        return "[" + ", ".join(describe(item) for item in reply) + "]"
    text = repr(reply)
    return text if len(text) <= 80 else text[:77] + "..."


def unexpected(operation: str, expected: str, reply: object) -> UnexpectedReplyError:
    return UnexpectedReplyError(
        f"redis {operation}: expected {expected}, received {describe(reply)}"
    )


def integer(operation: str, reply: object, expected: str = "an integer") -> int:
    """A RESP integer, or the decimal text of one (a stored field a script passed on)."""
    if type(reply) is int:
        return reply
    # Plain decimal only: int() would also take blanks and underscores ("1_0", " 7").
    if (
        type(reply) is str
        and 0 < len(reply) <= _MAX_DIGITS
        and reply.isascii()
        and (reply.isdigit() or (reply[0] == "-" and reply[1:].isdigit()))
    ):
        return int(reply)
    raise unexpected(operation, expected, reply)


def flag(operation: str, reply: object) -> bool:
    """A script's 1 or 0."""
    if type(reply) is int and (reply == 1 or reply == 0):
        return reply == 1
    raise unexpected(operation, "1 or 0", reply)


def count(operation: str, reply: object) -> int:
    """A non-negative integer (members added or removed, keys examined, replicas)."""
    if type(reply) is int and reply >= 0:
        return reply
    raise unexpected(operation, "a non-negative integer", reply)


def text(operation: str, reply: object, expected: str = "a string") -> str:
    """A string no longer than any stored value."""
    if type(reply) is str and len(reply) <= MAX_TEXT:
        return reply
    raise unexpected(operation, f"{expected} of at most {MAX_TEXT} characters", reply)


def value(operation: str, reply: object) -> str | None:
    """A stored value, or nil."""
    if reply is None or (type(reply) is str and len(reply) <= MAX_TEXT):
        return reply
    raise unexpected(operation, f"a value of at most {MAX_TEXT} characters or nil", reply)


def texts(operation: str, reply: object) -> list[str]:
    """An array of strings (keys, owners)."""
    if type(reply) is list:
        for item in reply:
            if type(item) is not str or len(item) > MAX_TEXT:
                break
        else:
            return reply
    raise unexpected(operation, "an array of strings", reply)


def versioned(operation: str, reply: object) -> tuple[str, int] | None:
    """``HMGET v n``: (value, version), or ``None`` for a missing key."""
    if type(reply) is list and len(reply) == 2:
        current, version = reply
        if current is None and version is None:
            return None
        if version is not None:
            return text(operation, current, "a value"), _version(operation, version)
    raise unexpected(operation, "[value, version] or [nil, nil]", reply)


def _version(operation: str, reply: object) -> int:
    version = integer(operation, reply, "a version")
    if version < 1:
        raise unexpected(operation, "a version of at least 1", reply)
    return version


def new_version(operation: str, reply: object) -> int:
    """``set``: the new version."""
    return _version(operation, reply)


def counter(operation: str, reply: object) -> tuple[int | None, str]:
    """``increment``: ``(new value, "")``, or ``(None, current value)`` when refused."""
    if type(reply) is list:
        if len(reply) == 1:
            return None, text(operation, reply[0], "the current value")
    elif type(reply) is str:
        number = integer(operation, reply, "a counter")
        if INT64_MIN <= number <= INT64_MAX:
            return number, ""
    raise unexpected(operation, "a counter's decimal text or [current value]", reply)


def swapped(operation: str, reply: object) -> tuple[bool, str | None, int]:
    """``compare_and_swap``: (ok, current value or ``None`` when ok, version); ``(False, None,
    0)`` for a missing key."""
    if type(reply) is list:
        if not reply:
            return False, None, 0
        head = reply[0]
        if type(head) is int and head == 1 and len(reply) == 2:
            return True, None, _version(operation, reply[1])
        if type(head) is int and head == 0 and len(reply) == 3:
            return False, text(operation, reply[1], "a value"), _version(operation, reply[2])
    raise unexpected(operation, "[], [1, version] or [0, value, version]", reply)


def pairs(operation: str, reply: object) -> list[tuple[str, str]]:
    """A flat array: key1, value1, key2, value2, ..."""
    if type(reply) is list and len(reply) % 2 == 0:
        flat = texts(operation, reply)
        return list(zip(flat[::2], flat[1::2], strict=True))
    raise unexpected(operation, "a flat array of keys and values", reply)


def scanned(operation: str, reply: object) -> tuple[list[tuple[str, str]], list[str]]:
    """``scan``'s ``{found, absent}``: the (key, value) pairs found, the members not found."""
    if type(reply) is list and len(reply) == 2:
        return pairs(operation, reply[0]), texts(operation, reply[1])
    raise unexpected(operation, "[found pairs, absent members]", reply)


def acquired(operation: str, reply: object) -> tuple[int, int] | int:
    """An acquisition: ``(epoch, counter)`` when granted, else the milliseconds to wait."""
    if type(reply) is int:
        return reply
    if type(reply) is list and len(reply) == 2:
        return integer(operation, reply[0], "an epoch"), integer(operation, reply[1], "a counter")
    raise unexpected(operation, "[epoch, counter] or the milliseconds to wait", reply)


def handed_over(operation: str, reply: object) -> str | None:
    """A lock release or break: the owner to wake ('' for nobody) when it released, ``None``
    when there was nothing to release."""
    if type(reply) is int and reply == 0:
        return None
    if type(reply) is list and len(reply) == 2 and type(reply[0]) is int and reply[0] == 1:
        return text(operation, reply[1], "the next owner")
    raise unexpected(operation, "0 or [1, next owner]", reply)


def lock_info(operation: str, reply: object) -> tuple[str, int, int, int] | None:
    """``LOCK_INFO``: (owner, ms left, epoch, counter), or ``None`` for a lock not held."""
    if type(reply) is list:
        if not reply:
            return None
        if len(reply) == 4:
            owner, left, epoch, number = reply
            return (
                text(operation, owner, "an owner"),
                integer(operation, left, "the ms left"),
                integer(operation, epoch, "an epoch"),
                integer(operation, number, "a counter"),
            )
    raise unexpected(operation, "[] or [owner, ms left, epoch, counter]", reply)


class LimitConflict(NamedTuple):
    """A permit acquisition refused: the name was first used with another limit."""

    limit: int


def permit_attempt(operation: str, reply: object) -> LimitConflict | tuple[int, int] | int:
    """A permit acquisition: the name's first limit when ours differs, ``(epoch, counter)``
    when granted, else the milliseconds to wait."""
    if type(reply) is list and len(reply) == 2 and reply[0] == "limit":
        return LimitConflict(integer(operation, reply[1], "a limit"))
    return acquired(operation, reply)


def permit_released(operation: str, reply: object) -> list[str] | None:
    """A permit release: the owners to wake when it released, ``None`` when not held."""
    if type(reply) is int and reply == 0:
        return None
    if type(reply) is list and len(reply) == 2 and type(reply[0]) is int and reply[0] == 1:
        return texts(operation, reply[1])
    raise unexpected(operation, "0 or [1, owners to wake]", reply)


def permit_holders(
    operation: str, reply: object
) -> tuple[int, list[tuple[str, int, int, int, int]]]:
    """``PERMIT_LIST``: the limit, and per live holder (owner, ms left, weight, epoch, counter)."""
    if type(reply) is list and reply and len(reply) % 5 == 1:
        limit = integer(operation, reply[0], "a limit")
        holders = [
            (
                text(operation, reply[i], "an owner"),
                integer(operation, reply[i + 1], "the ms left"),
                integer(operation, reply[i + 2], "a weight"),
                integer(operation, reply[i + 3], "an epoch"),
                integer(operation, reply[i + 4], "a counter"),
            )
            for i in range(1, len(reply), 5)
        ]
        return limit, holders
    raise unexpected(operation, "[limit, then owner, ms left, weight, epoch, counter each]", reply)
