"""The ``StateStore`` interface: fifteen atomic operations, each one round trip to the backend.

Public methods validate their arguments once, here, and hand canonical keys and whole
milliseconds to the backend's ``_``-prefixed primitives, which run through the backend's
:class:`~lockyard.operations.OperationRunner` (timeout + error translation). A backend implements
only the primitives; the contract is stated in ``shared/spec/state-backends.md`` and checked by
:mod:`lockyard.testing`.

Limits, identical on every backend and checked here before any round trip (see
``docs/reliability.md``): a value is at most :data:`MAX_VALUE_BYTES` of UTF-8 (DynamoDB items
stop at 400 KB, key and attributes included) and holds no NUL or lone surrogate
(``ValueError``); keys follow :mod:`lockyard.keys`; a time-index timestamp lies within
+/-:data:`MAX_INDEX_TIMESTAMP_MS` (Redis keeps index scores as doubles, exact only that far;
``SerializationError``).
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass

from lockyard.durations import Duration, ttl_to_ms
from lockyard.errors import ConfigError, SerializationError
from lockyard.fenced_writes import Fence, Fenced, FencedWrites, fence_of
from lockyard.keys import (
    MAX_KEY_BYTES,
    KeyKind,
    KeyLike,
    canonical_key,
    check_segment,
    kind_prefix,
    utf8_length,
)
from lockyard.operations import OperationRunner

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The largest value, in bytes of UTF-8 (192 KiB). DynamoDB items stop at 400 KB (key and
#: attributes included), and moto, the DynamoDB the tests run, counts the old and the new value
#: together while it updates an item: two values of 192 KiB plus the longest key still fit.
MAX_VALUE_BYTES = 192 * 1024
#: Time-index timestamps lie within +/- this many milliseconds (2**53 - 1: about 285,000 years).
MAX_INDEX_TIMESTAMP_MS = 2**53 - 1


@dataclass(frozen=True, slots=True)
class CasResult:
    """Outcome of ``compare_and_swap``. A conflict is a result (``ok=False``), not an error."""

    ok: bool
    current_value: str | None
    current_version: int


def _check_value(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"value must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("value must not contain NUL ('\\x00'): PostgreSQL cannot store it")
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(
                "value must be valid Unicode text: it contains a lone surrogate, "
                "which has no UTF-8 form"
            ) from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(
            f"value is {size} bytes of UTF-8; the limit is {MAX_VALUE_BYTES} (192 KiB) on every "
            "backend (DynamoDB items stop at 400 KB)"
        )
    return value


def _check_timestamp(name: str, value: object) -> int:
    at = _check_int(name, value)
    if not -MAX_INDEX_TIMESTAMP_MS <= at <= MAX_INDEX_TIMESTAMP_MS:
        raise SerializationError(
            f"{name} {at} is outside +/-(2**53 - 1) ms, the range every backend's index keeps "
            "exactly (Redis scores are doubles)"
        )
    return at


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise SerializationError(f"{name} {value} is outside the signed 64-bit range")
    return value


class StateStore(abc.ABC):
    """Shared state: dedup markers, counters, versioned records and two due-time indexes."""

    #: Whether its one-round-trip operations may be driven in a calling thread, their I/O done
    #: there (:mod:`lockyard.lanes`).
    serves_lanes: bool = False

    def __init__(self, runner: OperationRunner) -> None:
        self._run = runner
        #: The backend's fenced writes (``fence=`` on writes, :mod:`lockyard.fenced_writes`).
        self.fenced_writes: FencedWrites | None = None

    def _fenced(self, guard: Fenced) -> tuple[FencedWrites, Fence]:
        fenced = self.fenced_writes
        if fenced is None:
            raise ConfigError(f"the {self._run.backend} backend does not offer fenced writes")
        return fenced, fence_of(guard)

    # -- data ------------------------------------------------------------------------------
    async def check_and_set(
        self, key: KeyLike, value: str, ttl: Duration | None = None, *, fence: Fenced | None = None
    ) -> bool:
        """Create ``key`` only if absent (or expired); ``True`` if this call created it.

        ``fence``: a guard (lock, permit, read-write lock) whose lease must still be held, checked
        in the same round trip; if it is not, ``FenceLostError`` and nothing is written. The same
        holds for every write below that takes ``fence``.
        """
        k, v, ms = canonical_key(key), _check_value(value), ttl_to_ms(ttl)
        if fence is not None:
            fenced, f = self._fenced(fence)
            return await self._run("check_and_set", fenced.check_and_set(f, k, v, ms))
        return await self._run("check_and_set", self._check_and_set(k, v, ms))

    async def get(self, key: KeyLike) -> str | None:
        """The live value, or ``None``."""
        return await self._run("get", self._get(canonical_key(key)))

    async def get_versioned(self, key: KeyLike) -> tuple[str, int] | None:
        """The live value and its version, read together, or ``None``."""
        return await self._run("get_versioned", self._get_versioned(canonical_key(key)))

    async def set(
        self, key: KeyLike, value: str, ttl: Duration | None = None, *, fence: Fenced | None = None
    ) -> None:
        """Upsert; the expiry becomes exactly ``ttl`` (``None`` clears an earlier one)."""
        k, v, ms = canonical_key(key), _check_value(value), ttl_to_ms(ttl)
        if fence is not None:
            fenced, f = self._fenced(fence)
            await self._run("set", fenced.set(f, k, v, ms))
            return
        await self._run("set", self._set(k, v, ms))

    async def delete(self, key: KeyLike, *, fence: Fenced | None = None) -> bool:
        """Remove ``key``; ``True`` only if a live value existed."""
        k = canonical_key(key)
        if fence is not None:
            fenced, f = self._fenced(fence)
            return await self._run("delete", fenced.delete(f, k))
        return await self._run("delete", self._delete(k))

    async def increment(
        self,
        key: KeyLike,
        delta: int,
        ttl: Duration | None = None,
        *,
        fence: Fenced | None = None,
    ) -> int:
        """Add ``delta`` (a missing key starts at 0) and return the new value.

        The current value must be a counter: the canonical decimal of a signed 64-bit integer,
        the one grammar of every backend and exactly what Redis's ``HINCRBY`` reads. That is
        ``0``, or an optional ``-``, a digit 1-9 and further ASCII digits (``0|-?[1-9][0-9]*``,
        nothing before or after), from -2**63 to 2**63 - 1: ``"7"``, ``"-3"``,
        ``"-9223372036854775808"``; not ``"+7"``, ``" 7"``, ``"7\\n"``, ``"007"``, ``"-0"``,
        ``"1_000"``, ``"\\u0663"`` or ``str(2**63)``. Any other value raises
        ``SerializationError``, and so does a sum outside signed 64-bit; nothing changes then.
        The new value is written in the same canonical form.
        """
        k, d, ms = canonical_key(key), _check_int("delta", delta), ttl_to_ms(ttl)
        if fence is not None:
            fenced, f = self._fenced(fence)
            return await self._run("increment", fenced.increment(f, k, d, ms))
        return await self._run("increment", self._increment(k, d, ms))

    async def compare_and_swap(
        self,
        key: KeyLike,
        expected_version: int,
        new_value: str,
        ttl: Duration | None = None,
        *,
        fence: Fenced | None = None,
    ) -> CasResult:
        """Write ``new_value`` only if the live version equals ``expected_version``.

        With ``fence``, a lost lease raises ``FenceLostError`` before the versions are compared.
        """
        k, v, ms = canonical_key(key), _check_value(new_value), ttl_to_ms(ttl)
        expected = _check_int("expected_version", expected_version)
        if fence is not None:
            fenced, f = self._fenced(fence)
            cas = fenced.compare_and_swap(f, k, expected, v, ms)
            return await self._run("compare_and_swap", cas)
        return await self._run("compare_and_swap", self._compare_and_swap(k, expected, v, ms))

    # -- scans -----------------------------------------------------------------------------
    async def scan_keys(
        self, namespace: str, tenant: str, kind: KeyKind | str, prefix: str | None = None
    ) -> list[tuple[str, str]]:
        """Every live ``(key, value)`` under ``namespace:tenant:kind:`` + ``prefix`` (literal)."""
        anchor = kind_prefix(namespace, tenant, kind)
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
        key_prefix = anchor + (prefix or "")
        if utf8_length("scan prefix", key_prefix) > MAX_KEY_BYTES:
            return []  # no key is that long: nothing to ask the backend
        return await self._run("scan_keys", self._scan_keys(key_prefix, str(kind)))

    async def scan_keys_by_kind(self, kind: KeyKind | str) -> list[tuple[str, str]]:
        """Every live entry whose kind segment equals ``kind``, across namespaces and tenants."""
        k = check_segment("kind", str(kind) if isinstance(kind, KeyKind) else kind)
        if utf8_length("key kind", k) > MAX_KEY_BYTES - len("n:t::i"):
            return []  # no key with this kind fits the key limit: nothing to ask
        return await self._run("scan_keys_by_kind", self._scan_keys_by_kind(k))

    # -- indexes ---------------------------------------------------------------------------
    async def index_timeout(
        self, key: KeyLike, expires_at_ms: int, *, fence: Fenced | None = None
    ) -> None:
        at = _check_timestamp("expires_at_ms", expires_at_ms)
        if fence is None:
            await self._run("index_timeout", self._index_add("timeout", canonical_key(key), at))
            return
        await self._fenced_index_add("index_timeout", "timeout", canonical_key(key), at, fence)

    async def remove_timeout_index(self, key: KeyLike, *, fence: Fenced | None = None) -> None:
        k = canonical_key(key)
        if fence is None:
            await self._run("remove_timeout_index", self._index_remove("timeout", k))
            return
        await self._fenced_index_remove("remove_timeout_index", "timeout", k, fence)

    async def get_expired_timeouts(self, now_ms: int) -> list[str]:
        now = _check_int("now_ms", now_ms)
        return await self._run("get_expired_timeouts", self._index_due("timeout", now))

    async def index_chain_ready(
        self, key: KeyLike, ready_at_ms: int, *, fence: Fenced | None = None
    ) -> None:
        at = _check_timestamp("ready_at_ms", ready_at_ms)
        if fence is None:
            await self._run("index_chain_ready", self._index_add("chain", canonical_key(key), at))
            return
        await self._fenced_index_add("index_chain_ready", "chain", canonical_key(key), at, fence)

    async def remove_chain_ready_index(self, key: KeyLike, *, fence: Fenced | None = None) -> None:
        k = canonical_key(key)
        if fence is None:
            await self._run("remove_chain_ready_index", self._index_remove("chain", k))
            return
        await self._fenced_index_remove("remove_chain_ready_index", "chain", k, fence)

    async def get_ready_chains(self, now_ms: int) -> list[str]:
        now = _check_int("now_ms", now_ms)
        return await self._run("get_ready_chains", self._index_due("chain", now))

    async def _fenced_index_add(
        self, operation: str, index: str, key: str, at_ms: int, guard: Fenced
    ) -> None:
        fenced, f = self._fenced(guard)
        await self._run(operation, fenced.index_add(f, index, key, at_ms))

    async def _fenced_index_remove(
        self, operation: str, index: str, key: str, guard: Fenced
    ) -> None:
        fenced, f = self._fenced(guard)
        await self._run(operation, fenced.index_remove(f, index, key))

    # -- administration --------------------------------------------------------------------
    async def purge(self) -> int:
        """Delete every key, index entry and lock of this store's prefix; returns keys removed.

        Fencing counters go too: a store recreated on the same prefix starts over. Used by the
        operator for ``deletionPolicy: Delete``; never touches other prefixes.
        """
        return await self._run("purge", self._purge())

    # -- backend primitives: canonical keys, whole milliseconds ----------------------------
    @abc.abstractmethod
    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool: ...

    @abc.abstractmethod
    async def _get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def _get_versioned(self, key: str) -> tuple[str, int] | None: ...

    @abc.abstractmethod
    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int: ...

    @abc.abstractmethod
    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult: ...

    @abc.abstractmethod
    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        """Live entries whose canonical key starts with ``key_prefix`` (of kind ``kind``)."""

    @abc.abstractmethod
    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]: ...

    @abc.abstractmethod
    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        """``index`` is ``"timeout"`` or ``"chain"``."""

    @abc.abstractmethod
    async def _index_remove(self, index: str, key: str) -> None: ...

    @abc.abstractmethod
    async def _index_due(self, index: str, now_ms: int) -> list[str]: ...

    @abc.abstractmethod
    async def _purge(self) -> int: ...


#: The counter grammar (see :meth:`StateStore.increment`) as a regular expression that Python
#: (``re.fullmatch``) and PostgreSQL (``~``, anchored) read alike; the int64 range is checked
#: separately. Redis's ``HINCRBY`` enforces the same grammar and range natively.
COUNTER_PATTERN = "0|-?[1-9][0-9]*"
#: The rule as the ``SerializationError`` of every backend states it.
COUNTER_RULE = (
    "a counter is the canonical decimal of a signed 64-bit integer "
    "(0|-?[1-9][0-9]*, from -2**63 to 2**63-1; as Redis HINCRBY reads integers)"
)
#: The longest counter: ``str(INT64_MIN)``, 20 characters.
COUNTER_MAX_LENGTH = len(str(INT64_MIN))
_COUNTER = re.compile(COUNTER_PATTERN)


def counter_value(value: str) -> int | None:
    """``value`` as an int if it is a counter (canonical signed 64-bit decimal), else ``None``."""
    if len(value) > COUNTER_MAX_LENGTH or _COUNTER.fullmatch(value) is None:
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def parse_counter(value: str, key: str) -> int:
    """A stored counter value as an int, or ``SerializationError`` naming the key and the rule."""
    number = counter_value(value)
    if number is None:
        raise SerializationError(
            f"increment on {key!r}: the current value {value[:40]!r} is not a counter: "
            f"{COUNTER_RULE}"
        )
    return number


def checked_sum(current: int, delta: int, key: str) -> int:
    """``current + delta``, or ``SerializationError`` when it leaves signed 64-bit."""
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise SerializationError(
            f"increment on {key!r}: {current} + {delta} overflows a signed 64-bit integer"
        )
    return result
