"""A fake server endpoint for wire fuzzing: a proxy on 127.0.0.1 that damages chosen replies.

:class:`FuzzProxy` sits between Lockyard and a real Redis or PostgreSQL server and passes
everything through, except the reply to the next request that contains a marker (the fuzzed
operation's key): that reply is truncated, stalled, delivered late, replaced by garbage or by
a well-formed reply of the wrong shape, given an absurd length, inflated, or turned into an
error. Handshakes, scripts loading and every other operation on the same connections stay
real, so the damage lands in the middle of a live connection pool, where a client that does
not throw the connection away would hand the rest of a broken reply to the next operation.

The proxy frames both directions: RESP values for Redis (RESP2 and RESP3), and PostgreSQL
messages (a type byte and a length) with a request ending at Sync or Query and its reply at
ReadyForQuery.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from dataclasses import dataclass

HOST = "127.0.0.1"
STARTUP_CODE = 196608  # protocol 3.0
SSL_REQUEST_CODE = 80877103

#: What can happen to the marked reply.
MUTATIONS = (
    "truncate-close",  # the first `cut` bytes, then the connection closes
    "truncate-stall",  # the first `cut` bytes, then silence with the connection open
    "late-remainder",  # the first `cut` bytes, the rest after `delay_s`
    "garbage",  # bytes that are no valid reply at all
    "wrong-shape",  # a well-formed reply this request never gets
    "absurd-length",  # a header claiming about 2 GB, then silence
    "oversized",  # a well-formed reply of 32 MiB
    "error",  # an error reply
)


@dataclass(frozen=True)
class Mutation:
    kind: str
    #: where to cut, as a fraction of the reply (truncations)
    cut: float = 0.5
    #: raw bytes to use (garbage) or to choose a variant by (wrong-shape, error)
    noise: bytes = b""
    delay_s: float = 2.0


# -- framing -------------------------------------------------------------------------------


def resp_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """End offset of the RESP value at ``start``, or None while incomplete."""
    if start >= len(buf):
        return None
    line_end = buf.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, head = buf[start : start + 1], bytes(buf[start + 1 : line_end])
    after = line_end + 2
    if kind in (b"+", b"-", b":", b",", b"#", b"_", b"("):
        return after
    if kind in (b"$", b"!", b"="):
        size = int(head)
        if size < 0:
            return after
        return after + size + 2 if len(buf) >= after + size + 2 else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(head)
        if kind in (b"%", b"|"):
            count *= 2
        position: int | None = after
        for _ in range(max(count, 0)):
            assert position is not None
            position = resp_end(buf, position)
            if position is None:
                return None
        if kind == b"|":  # an attribute precedes the real reply
            return resp_end(buf, position) if position is not None else None
        return position
    # An inline command (client side): one line.
    return after


def _pg_message_end(buf: bytes | bytearray, start: int, typed: bool) -> int | None:
    header = 5 if typed else 4
    if len(buf) < start + header:
        return None
    offset = start + 1 if typed else start
    (length,) = struct.unpack("!I", bytes(buf[offset : offset + 4]))
    end = offset + length
    return end if len(buf) >= end else None


class _Framer:
    """Splits one direction of a connection into requests or replies (bytes)."""

    def __init__(self, protocol: str, client_side: bool) -> None:
        self.protocol = protocol
        self.client_side = client_side
        self.buf = bytearray()
        self.unit = bytearray()  # the PostgreSQL request or reply being gathered
        self.started = False  # PostgreSQL: past the untyped start-up messages
        self.ssl_answer_due = False

    @property
    def partial(self) -> int:
        """Bytes received of the unit not yet complete."""
        return len(self.buf) + len(self.unit)

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        units: list[bytes] = []
        while True:
            unit = self._next()
            if unit is None:
                return units
            units.append(unit)

    def _next(self) -> bytes | None:
        if self.protocol == "redis":
            end = resp_end(self.buf)
            if end is None:
                return None
            unit = bytes(self.buf[:end])
            del self.buf[:end]
            return unit
        return self._next_pg()

    def _next_pg(self) -> bytes | None:
        if not self.client_side and self.ssl_answer_due:
            if not self.buf:
                return None
            self.ssl_answer_due = False  # the one-byte answer to SSLRequest
            unit = bytes(self.buf[:1])
            del self.buf[:1]
            return unit
        while True:
            typed = self.started or not self.client_side
            end = _pg_message_end(self.buf, 0, typed)
            if end is None:
                return None
            message = bytes(self.buf[:end])
            del self.buf[:end]
            if not typed:
                (code,) = struct.unpack("!I", message[4:8])
                if code == STARTUP_CODE:
                    self.started = True  # typed messages from here on
                return message  # a start-up message is a request of its own
            self.unit += message
            # A request ends with Sync or Query, its reply with ReadyForQuery. (The password
            # messages of the start-up join the first request; they carry no marker.)
            if message[:1] in ((b"S", b"Q") if self.client_side else (b"Z",)):
                unit = bytes(self.unit)
                self.unit.clear()
                return unit


# -- the proxy -----------------------------------------------------------------------------


class FuzzProxy:
    """Listens on a free loopback port and forwards to ``upstream_port``."""

    def __init__(self, protocol: str, upstream_port: int, marker: bytes) -> None:
        if protocol not in ("redis", "postgresql"):
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.upstream_port = upstream_port
        self.marker = marker
        self.port = 0
        self._armed: Mutation | None = None
        self.fired: list[Mutation] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def arm(self, mutation: Mutation) -> None:
        """Damage the reply to the next request that carries the marker."""
        self._armed = mutation

    async def start(self) -> FuzzProxy:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FuzzProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        tags: deque[bool] = deque()
        upstream = _Framer(self.protocol, client_side=True)
        downstream = _Framer(self.protocol, client_side=False)

        async def client_to_server() -> None:
            while data := await client_r.read(65536):
                for unit in upstream.feed(data):
                    if self.protocol == "postgresql" and unit[4:8] == struct.pack(
                        "!I", SSL_REQUEST_CODE
                    ):
                        downstream.ssl_answer_due = True
                    tags.append(self.marker in unit)
                server_w.write(data)
                await server_w.drain()

        def targeted() -> bool:
            # The reply being received answers the request at the head of the queue.
            return bool(tags) and tags[0] and self._armed is not None

        async def server_to_client() -> None:
            # Bytes go through as they come (a start-up exchange needs its answers before its
            # reply is complete), except the target reply, held until whole, then damaged.
            while data := await server_r.read(65536):
                offset = -downstream.partial
                for unit in downstream.feed(data):
                    start, offset = max(offset, 0), offset + len(unit)
                    if not targeted():
                        if tags:
                            tags.popleft()
                        client_w.write(data[start:offset])
                        continue
                    tags.popleft()
                    mutation, self._armed = self._armed, None
                    assert mutation is not None
                    self.fired.append(mutation)
                    await client_w.drain()
                    if not await self._damage(mutation, unit, client_w):
                        return
                if not targeted():
                    client_w.write(data[max(offset, 0) :])
                await client_w.drain()

        pumps = [
            asyncio.ensure_future(client_to_server()),
            asyncio.ensure_future(server_to_client()),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)

    async def _damage(self, m: Mutation, reply: bytes, client: asyncio.StreamWriter) -> bool:
        """Send the damaged reply; False when the connection must end (or stall) now."""
        cut = max(1, min(len(reply) - 1, int(len(reply) * m.cut))) if len(reply) > 1 else 0
        if m.kind == "truncate-close":
            client.write(reply[:cut])
            await client.drain()
            return False
        if m.kind in ("truncate-stall", "absurd-length"):
            client.write(reply[:cut] if m.kind == "truncate-stall" else self._absurd(reply))
            await client.drain()
            await asyncio.sleep(3600)  # silence until the client hangs up
            return False
        if m.kind == "late-remainder":
            client.write(reply[:cut])
            await client.drain()
            await asyncio.sleep(m.delay_s)
            client.write(reply[cut:])
            await client.drain()
            return True
        replacement = {
            "garbage": self._garbage,
            "wrong-shape": self._wrong_shape,
            "oversized": self._oversized,
            "error": self._error,
        }[m.kind](m, reply)
        client.write(replacement)
        await client.drain()
        return True

    # -- replies -------------------------------------------------------------------------
    def _absurd(self, reply: bytes) -> bytes:
        if self.protocol == "redis":
            return b"$2147483000\r\n" + reply[:8]
        return reply[:1] + struct.pack("!I", 0x7FFFFF00) + reply[5:12]

    def _garbage(self, m: Mutation, reply: bytes) -> bytes:
        if self.protocol == "redis":
            # No RESP type starts with '\x07': whatever follows cannot parse as a reply.
            return b"\x07" + (m.noise or b"?") + b"\r\n"
        # A message of a type PostgreSQL never sends in place of the reply, and, as the noise
        # says, either nothing more or raw noise where the next message's header belongs.
        junk = b"\x07" + struct.pack("!I", 4 + len(m.noise)) + m.noise
        return junk + (m.noise if m.noise[:1] > b"\x7f" else b"")

    def _wrong_shape(self, m: Mutation, reply: bytes) -> bytes:
        pick = m.noise[0] if m.noise else 0
        if self.protocol == "redis":
            shapes = (
                b":-1\r\n",
                b"*0\r\n",
                b"$-1\r\n",
                b"+OK\r\n",
                b"*3\r\n:1\r\n$1\r\nx\r\n*1\r\n:2\r\n",
                b"$4\r\nnope\r\n",
                b",3.5\r\n",
                b"*2\r\n$-1\r\n:99999999999999999999\r\n",
            )
            return shapes[pick % len(shapes)]
        # A DataRow with a different number of columns or a field of the wrong size, in place
        # of the reply's own rows (kept framed: the rest of the reply follows).
        rows = (
            struct.pack("!hi", 0, 0),
            struct.pack("!hi", 1, 3) + b"\xff\xfe\xfd",
            struct.pack("!hi", 9, -1) + struct.pack("!i", -1) * 8,
            struct.pack("!hi", 1, 2) + b"\x00\x01",
        )
        row = rows[pick % len(rows)]
        data_row = b"D" + struct.pack("!I", 4 + len(row)) + row
        return _replace_data_rows(reply, data_row)

    def _oversized(self, m: Mutation, reply: bytes) -> bytes:
        size = 32 * 1024 * 1024
        if self.protocol == "redis":
            return b"$%d\r\n" % size + b"x" * size + b"\r\n"
        field = b"x" * size
        row = struct.pack("!hi", 1, size) + field
        return _replace_data_rows(reply, b"D" + struct.pack("!I", 4 + len(row)) + row)

    def _error(self, m: Mutation, reply: bytes) -> bytes:
        pick = m.noise[0] if m.noise else 0
        if self.protocol == "redis":
            errors = (
                b"-ERR fuzzed\r\n",
                b"-NOSCRIPT No matching script\r\n",
                b"-READONLY You can't write against a read only replica.\r\n",
                b"-LOADING Redis is loading the dataset in memory\r\n",
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                b"-MOVED 3999 127.0.0.1:1\r\n",
            )
            return errors[pick % len(errors)]
        codes = (b"XX000", b"40001", b"57014", b"53300", b"22P02", b"08006", b"42P01", b"ZZZZZ")
        code = codes[pick % len(codes)]
        fields = b"SERROR\x00VERROR\x00C" + code + b"\x00Mfuzzed\x00\x00"
        error = b"E" + struct.pack("!I", 4 + len(fields)) + fields
        ready = b"Z" + struct.pack("!I", 5) + b"I"
        return error + ready


def _replace_data_rows(reply: bytes, row: bytes) -> bytes:
    """``reply`` with its DataRow messages replaced by ``row`` (inserted before the
    CommandComplete when the reply had none)."""
    out = bytearray()
    position, placed = 0, False
    while position + 5 <= len(reply):
        kind = reply[position : position + 1]
        (length,) = struct.unpack("!I", reply[position + 1 : position + 5])
        message = reply[position : position + 1 + length]
        position += 1 + length
        if kind == b"D":
            if not placed:
                out += row
                placed = True
            continue
        if kind == b"C" and not placed:
            out += row
            placed = True
        out += message
    return bytes(out)
