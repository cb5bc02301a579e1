"""Redis Cluster placement: the slot of a key, and hash tags made to land on chosen slots.

Redis Cluster maps a key to one of 16384 slots by the CRC16 (XMODEM) of its hash tag, the text
between the first ``{`` and the next ``}``; each master serves ranges of slots. The layout
(:mod:`.keys`) puts every key one operation touches under one tag. On a cluster it also spreads
the records of one kind over several tags, *buckets*, whose slots are evenly spaced over the
slot space (:func:`spread_tags`): masters serve contiguous ranges, so they share a kind's
buckets evenly by construction, not by the luck of a hash (docs/backends/redis-cluster.md,
*Placement*).

Choosing a tag for a slot: CRC16 with a zero start and no final XOR is linear over GF(2), so
for a fixed body the slot of ``body + suffix`` is an affine function of the suffix's bits. The
suffix is four characters from ``@`` to ``O`` (``0x40`` XOR 0..15: 16 free bits, none of them a
glob or hash-tag character); :func:`tag_for_slot` solves for the bits by Gaussian elimination
(microseconds, no table) and checks the answer.
"""

from __future__ import annotations

import zlib
from binascii import crc_hqx
from functools import lru_cache

#: Slots of a Redis Cluster.
SLOTS = 16384
_SLOT_MASK = SLOTS - 1
#: The suffix's characters are ``_SUFFIX_BASE`` XOR a 4-bit value each.
_SUFFIX_BASE = 0x40
_SUFFIX_CHARS = 4


def key_slot(key: str) -> int:
    """The slot of ``key``, as Redis Cluster computes it (hash tag rule included)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) & _SLOT_MASK


def bucket_of(key: str, buckets: int) -> int:
    """Which of ``buckets`` buckets a record's canonical key goes to (stable across processes).

    As Redis does with hash tags, a key holding ``{group}`` is placed by ``group`` alone, so
    records that name the same group share a bucket (co-location on request)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return zlib.crc32(data) % buckets


def bucket_slots(body: str, count: int) -> tuple[int, ...]:
    """``count`` slots evenly spaced over the slot space, the first at the slot of ``body``."""
    first = crc_hqx(body.encode(), 0) & _SLOT_MASK
    return tuple((first + i * SLOTS // count) % SLOTS for i in range(count))


@lru_cache(maxsize=1)
def _suffix_basis() -> tuple[int, tuple[int, ...]]:
    """(CRC of the all-zero suffix ``@@@@``, CRC of each of its 16 free bits alone)."""
    base = bytes([_SUFFIX_BASE] * _SUFFIX_CHARS)
    vectors = []
    for position in range(_SUFFIX_CHARS):
        for bit in range(4):
            delta = bytearray(_SUFFIX_CHARS)
            delta[position] = 1 << bit
            vectors.append(crc_hqx(bytes(delta), 0))
    return crc_hqx(base, 0), tuple(vectors)


@lru_cache(maxsize=1)
def _slot_basis() -> dict[int, tuple[int, int]]:
    """An XOR basis of the suffix vectors in the slot's 14 bits: highest bit -> (vector, the
    suffix bits that make it)."""
    _, vectors = _suffix_basis()
    basis: dict[int, tuple[int, int]] = {}
    for index, vector in enumerate(vectors):
        value, bits = vector & _SLOT_MASK, 1 << index
        while value:
            high = value.bit_length() - 1
            if high not in basis:
                basis[high] = (value, bits)
                break
            pivot_value, pivot_bits = basis[high]
            value, bits = value ^ pivot_value, bits ^ pivot_bits
    return basis


def _solve(wanted: int) -> int:
    """The suffix bits whose vectors XOR to ``wanted`` in the slot's 14 bits."""
    basis = _slot_basis()
    chosen = 0
    while wanted:
        pivot = basis.get(wanted.bit_length() - 1)
        if pivot is None:  # never: the 16 suffix bits span all 14 slot bits (a test checks)
            raise AssertionError("the suffix bits do not span the slot space")
        wanted, chosen = wanted ^ pivot[0], chosen ^ pivot[1]
    return chosen


def tag_for_slot(body: str, slot: int) -> str:
    """``body`` plus a four-character suffix such that the tag ``body + suffix`` is in ``slot``."""
    state = crc_hqx(body.encode(), 0)
    zero_suffix, _ = _suffix_basis()
    # crc(body + s) = crc(s) XOR crc(zeros, start=crc(body)), and crc(s) = crc(@@@@) XOR the
    # vectors of the bits set in s.
    carried = crc_hqx(bytes(_SUFFIX_CHARS), state)
    bits = _solve((slot ^ carried ^ zero_suffix) & _SLOT_MASK)
    suffix = "".join(
        chr(_SUFFIX_BASE | (bits >> (4 * position)) & 0xF) for position in range(_SUFFIX_CHARS)
    )
    tag = body + suffix
    if key_slot("{" + tag + "}") != slot:
        raise AssertionError(f"tag {tag!r} is not in slot {slot}")  # never: the algebra holds
    return tag


def spread_tags(body: str, count: int) -> tuple[str, ...]:
    """``count`` tags starting with ``body`` whose slots are evenly spaced over the slot space,
    the first at the slot of ``body`` itself (so different bodies start at different slots)."""
    return tuple(tag_for_slot(body, slot) for slot in bucket_slots(body, count))
