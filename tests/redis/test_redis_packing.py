"""hiredis packs Lockyard's Redis commands byte for byte as redis-py's own packer would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from lockyard.backends.redis.packing import PackedConnection

arguments = st.one_of(
    st.text(max_size=50),
    st.binary(max_size=50),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.lists(arguments, max_size=12))
def test_the_same_bytes_as_redis_py(args: list[object]) -> None:
    command = ("EVALSHA", *args)
    packed = PackedConnection().pack_command(*command)
    assert b"".join(packed) == b"".join(Connection().pack_command(*command))


def test_it_packs_in_one_buffer_with_hiredis() -> None:
    # One bytes object is what hiredis returns; redis-py's packer returns pieces.
    assert PackedConnection().pack_command("SET", "k", "x" * 100_000, "PX", 5) == [
        b"".join(Connection().pack_command("SET", "k", "x" * 100_000, "PX", 5))
    ]


@pytest.mark.parametrize("bad", [None, True, object()])
def test_what_hiredis_refuses_gets_redis_pys_error(bad: object) -> None:
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)  # type: ignore[arg-type]


def test_a_command_name_with_a_space_is_split_as_redis_py_does() -> None:
    packed = b"".join(PackedConnection().pack_command("CONFIG GET", "maxmemory"))
    assert packed == b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$9\r\nmaxmemory\r\n"


def test_unencodable_text_fails_as_in_redis_py() -> None:
    with pytest.raises(UnicodeEncodeError):
        PackedConnection().pack_command("SET", "k", "\ud800")
