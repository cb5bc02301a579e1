"""Redis commands packed in C by hiredis, on redis-py's asyncio connections.

redis-py's synchronous client packs commands with hiredis when it is installed; its asyncio
client always packs in Python. For the 12 arguments of a lock's ``EVALSHA`` that costs about
20 µs, a tenth of a loopback round trip, on every operation. The connection classes here pack
with ``hiredis.pack_command`` instead, which writes the same bytes (UTF-8 for text, decimal for
integers, ``repr`` for floats). Anything it does not take (``None``, ``bool``, an encoder that
is not strict UTF-8, a command name holding a space) goes through redis-py's own packer, so
errors stay redis-py's ``DataError``. :func:`pack` gives the same bytes as one buffer, for the
auto-pipelined connections (:mod:`.pipelined`), which write many commands at once.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis-py without its [hiredis] extra: its own packer only
    _hiredis_pack = None  # type: ignore[assignment]


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0] if args else None
        encoder = self.encoder
        if (
            _hiredis_pack is None
            or encoder.encoding != "utf-8"
            or encoder.encoding_errors != "strict"
            or (isinstance(first, str) and " " in first)
            or (isinstance(first, bytes) and b" " in first)
        ):
            return super().pack_command(*args)
        try:
            return [_hiredis_pack(args)]
        except TypeError:
            return super().pack_command(*args)


class PackedConnection(_HiredisPacking, Connection):
    pass


#: Packs what hiredis refuses, as redis-py's connections do (it never connects).
_FALLBACK = PackedConnection()


def pack(args: tuple[Any, ...]) -> bytes:
    """One command's bytes: exactly what :class:`PackedConnection` sends for it."""
    first = args[0]
    if _hiredis_pack is not None and isinstance(first, str) and " " not in first:
        try:
            packed: bytes = _hiredis_pack(args)
            return packed
        except TypeError:
            pass
    return b"".join(_FALLBACK.pack_command(*args))


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class PackedSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    pass
