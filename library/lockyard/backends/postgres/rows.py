"""Typed readers of the PostgreSQL backend's rows: every store, lock, permit and fenced operation
reads what its statement returned through these, at the backend boundary.

asyncpg decodes each column by the type the statement's row description gives it, so a reply
that decodes is nearly always right; these readers check the rest (the number of columns,
``NULL`` where none may be, the Python type of each column, a text longer than any stored
value) and raise :class:`~lockyard.errors.UnexpectedReplyError` naming the operation, what it
expects and what came back. A reply asyncpg cannot decode at all is mapped in
:mod:`.pool` (docs/backends/postgres.md, *Replies*). The checks cost a few ``type`` tests.
"""

from __future__ import annotations

from asyncpg import Record

from lockyard.errors import UnexpectedReplyError
from lockyard.store import MAX_VALUE_BYTES

#: The longest text a column may carry where a stored value, key or owner belongs; characters
#: never outnumber UTF-8 bytes, so ``len`` bounds the bytes in constant time.
MAX_TEXT = MAX_VALUE_BYTES


def describe(value: object) -> str:
    """A short account of what came back (never the whole of a large value)."""
    if isinstance(value, str | bytes) and len(value) > 40:
        return f"{type(value).__name__} of length {len(value)} ({value[:20]!r}...)"
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} rows"
    if isinstance(value, Record | tuple):
        return "(" + ", ".join(describe(item) for item in value) + ")"
    return repr(value)


def unexpected(operation: str, expected: str, received: object) -> UnexpectedReplyError:
    return UnexpectedReplyError(
        f"postgresql {operation}: expected {expected}, received {describe(received)}"
    )


def row(operation: str, record: object, columns: int, expected: str) -> Record:
    """A row of exactly ``columns`` columns (``expected`` describes them, for the message)."""
    if isinstance(record, Record) and len(record) == columns:
        return record
    raise unexpected(operation, expected, record)


def row_or_none(operation: str, record: object, columns: int, expected: str) -> Record | None:
    return None if record is None else row(operation, record, columns, expected)


def text(operation: str, value: object, what: str = "a text") -> str:
    if type(value) is str and len(value) <= MAX_TEXT:
        return value
    raise unexpected(operation, f"{what} of at most {MAX_TEXT} characters", value)


def text_or_none(operation: str, value: object, what: str = "a text") -> str | None:
    return None if value is None else text(operation, value, what)


def integer(operation: str, value: object, what: str = "an integer") -> int:
    if type(value) is int:
        return value
    raise unexpected(operation, what, value)


def integer_or_none(operation: str, value: object, what: str = "an integer") -> int | None:
    return None if value is None else integer(operation, value, what)


def boolean(operation: str, value: object) -> bool:
    if type(value) is bool:
        return value
    raise unexpected(operation, "a boolean", value)


def true_or_none(operation: str, value: object) -> bool:
    """``RETURNING true``: one row when the statement acted, none when it did not."""
    if value is None or value is True:
        return value is True
    raise unexpected(operation, "true or no row", value)


def texts_or_none(operation: str, value: object) -> list[str]:
    """A ``text[]`` of owners (``NULL`` reads as none)."""
    if value is None:
        return []
    if type(value) is list:
        for item in value:
            text(operation, item, "an owner")
        return value
    raise unexpected(operation, "an array of owners", value)


def rows(operation: str, records: object) -> list[Record]:
    if type(records) is list:
        return records
    raise unexpected(operation, "a list of rows", records)


# -- per statement -----------------------------------------------------------------------------


def versioned(operation: str, record: object) -> tuple[str, int] | None:
    """(value, version) of a live key, or ``None``."""
    found = row_or_none(operation, record, 2, "(value text, version bigint)")
    if found is None:
        return None
    return text(operation, found[0], "a value"), integer(operation, found[1], "a version")


def swapped(operation: str, record: object, offset: int = 0) -> tuple[bool, str, int]:
    """(ok, value, version) from ``offset`` on (a fenced row starts with ``held``)."""
    found = row(operation, record, 3 + offset, "(ok boolean, value text, version bigint)")
    return (
        boolean(operation, found[offset]),
        text(operation, found[offset + 1], "a value"),
        integer(operation, found[offset + 2], "a version"),
    )


def pairs(operation: str, records: object) -> list[tuple[str, str]]:
    """(key, value) rows."""
    return [
        (text(operation, r[0], "a key"), text(operation, r[1], "a value"))
        for r in (row(operation, r, 2, "(key text, value text)") for r in rows(operation, records))
    ]


def keys(operation: str, records: object) -> list[str]:
    """(key) rows."""
    return [
        text(operation, row(operation, r, 1, "(key text)")[0], "a key")
        for r in rows(operation, records)
    ]


def status(operation: str, value: object, command: str) -> str:
    """A command status that starts with ``command`` (``"INSERT 0 "``, ``"DELETE "``)."""
    if type(value) is str and value.startswith(command) and len(value) <= 40:
        return value
    raise unexpected(operation, f"the command status {command.strip()} ...", value)


def deleted(operation: str, status: object) -> int:
    """A command status ``"DELETE n"``: n."""
    if type(status) is str and status.startswith("DELETE "):
        number = status[len("DELETE ") :]
        if number.isascii() and number.isdigit() and len(number) <= 20:
            return int(number)
    raise unexpected(operation, "the command status DELETE n", status)


def handed_over(operation: str, record: object) -> tuple[bool, str | None]:
    """A lock release, break or queue exit: (whether it changed a row, next owner or ``None``).

    The statement returns no row when it changed nothing, else (commit_without_flush, next_owner).
    """
    if record is None:
        return False, None
    found = row(operation, record, 2, "(commit_without_flush text, next_owner text)")
    return True, text_or_none(operation, found[1], "an owner")
