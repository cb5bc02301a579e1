"""Where each logical object of one store prefix lives in Redis.

Every key starts with ``lockyard:{P|`` (``P`` = the prefix); the part in braces is the Redis
Cluster hash tag, so every key one operation touches is in one slot. The table of keys, their
types and what they hold is in docs/backends/redis.md.

On Redis Cluster (``buckets`` > 1) each kind's records, and the time indexes, are split into
buckets (:mod:`.slots`): bucket ``b`` of a prefix is one slot, which holds bucket ``b`` of every
kind (each under its own tag) and of the time indexes, so a record's data key, its kind index
and expiry set, and its time-index entries are in one slot; scans read every bucket
(docs/backends/redis-cluster.md, *Placement*). One bucket is the layout of one server.
"""

from __future__ import annotations

from .slots import bucket_of, bucket_slots, tag_for_slot

KEY_ROOT = "lockyard"
#: Most kinds whose keys a layout remembers (beyond that they are computed per call).
_KINDS_REMEMBERED = 4096


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (``SCAN MATCH``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class KeyLayout:
    """The key names of one prefix (see docs/backends/redis.md, *Data layout*)."""

    __slots__ = (
        "_kinds",
        "_slots",
        "_time_indexes",
        "buckets",
        "chain_index",
        "expiry_pattern",
        "lease_pattern",
        "lock_prefix",
        "prefix",
        "purge_pattern",
        "release_channel",
        "sweep_lease",
        "tag",
        "timeout_index",
    )

    def __init__(self, prefix: str, buckets: int = 1) -> None:
        self.prefix = prefix
        self.buckets = buckets
        self.tag = f"{KEY_ROOT}:{{{prefix}|"
        self.release_channel = f"{self.tag}}}:released"
        self.sweep_lease = f"{self.tag}}}:sweep"
        self.lock_prefix = f"{self.tag}lock:"
        self.purge_pattern = glob_escape(self.tag) + "*"
        self.lease_pattern = glob_escape(self.lock_prefix) + "*}:lease"
        self.expiry_pattern = glob_escape(self.tag) + "*}:x"
        #: The slot of each bucket (a cluster's; one server has one bucket and no slots).
        self._slots = bucket_slots(f"{prefix}|", buckets) if buckets > 1 else ()
        # The time indexes' buckets: {P|} on one server; {P|<suffix>} per bucket on a cluster.
        bases = [f"{self.tag}}}"] if buckets == 1 else self._bucket_bases(f"{prefix}|")
        self._time_indexes = {
            "timeout": tuple(base + ":timeout" for base in bases),
            "chain": tuple(base + ":chain" for base in bases),
        }
        self.timeout_index = self._time_indexes["timeout"][0]
        self.chain_index = self._time_indexes["chain"][0]
        self._kinds: dict[str, tuple[tuple[str, str, str], ...]] = {}

    def kind_buckets(self, kind: str) -> tuple[tuple[str, str, str], ...]:
        """(data-key prefix, index, expiry set) of each bucket of ``kind``."""
        buckets = self._kinds.get(kind)
        if buckets is None:
            if self.buckets == 1:
                bases = [f"{self.tag}{kind}}}"]
            else:
                bases = self._bucket_bases(f"{self.prefix}|{kind}|")
            buckets = tuple((base + ":d:", base + ":i", base + ":x") for base in bases)
            if len(self._kinds) < _KINDS_REMEMBERED:
                self._kinds[kind] = buckets
        return buckets

    def _bucket_bases(self, body: str) -> list[str]:
        """``lockyard:{<body><suffix>}`` for each bucket: the tag lands on the bucket's slot."""
        return [f"{KEY_ROOT}:{{{tag_for_slot(body, slot)}}}" for slot in self._slots]

    def name_beside(self, space: str, name: str, key: str) -> str:
        """A name, ``name`` plus ``~`` and four characters, whose keys in ``space`` (``lock``,
        ``semaphore``, ``rwlock``) share the slot of ``key``'s bucket, so a guard of that name
        can fence writes of ``key``; ``name`` itself when there is one bucket."""
        if self.buckets == 1:
            return name
        if "}" in name:
            raise ValueError(f"a name placed beside a key cannot hold '}}': {name!r}")
        slot = self._slots[bucket_of(key, self.buckets)]
        tag = tag_for_slot(f"{self.prefix}|{space}:{name}~", slot)
        return name + "~" + tag[-4:]

    def kind(self, kind: str) -> tuple[str, str, str]:
        """(data-key prefix, index, expiry set) of ``kind`` on one server (its only bucket)."""
        return self.kind_buckets(kind)[0]

    def _bucket(self, key: str) -> tuple[str, str, str]:
        buckets = self.kind_buckets(key.split(":", 3)[2])
        return buckets[0] if self.buckets == 1 else buckets[bucket_of(key, self.buckets)]

    def data(self, key: str) -> str:
        return self._bucket(key)[0] + key

    def for_key(self, key: str) -> tuple[str, str, str]:
        """(data hash, index, expiry set) of a canonical key."""
        prefix, index, expiries = self._bucket(key)
        return prefix + key, index, expiries

    def time_index(self, index: str, key: str) -> str:
        """The time index ``index`` (``timeout`` or ``chain``) bucket that holds ``key``."""
        indexes = self._time_indexes[index if index == "timeout" else "chain"]
        return indexes[0] if self.buckets == 1 else indexes[bucket_of(key, self.buckets)]

    def time_indexes(self, index: str) -> tuple[str, ...]:
        """Every bucket of the time index ``index``."""
        return self._time_indexes[index if index == "timeout" else "chain"]

    def lease(self, name: str) -> str:
        return f"{self.lock_prefix}{name}}}:lease"

    def fence(self, name: str) -> str:
        return f"{self.lock_prefix}{name}}}:fence"

    def lock_keys(self, name: str) -> tuple[str, str, str, str]:
        """(lease, fence, queue, waiter deadlines) of one lock: one hash slot."""
        base = f"{self.lock_prefix}{name}}}"
        return base + ":lease", base + ":fence", base + ":queue", base + ":waiters"

    def lock_name(self, lease_key: str) -> str:
        return lease_key[len(self.lock_prefix) : -len("}:lease")]

    def is_data_key(self, key: str) -> bool:
        rest = key[len(self.tag) :]
        if rest.startswith(("}:", "lock:", "semaphore:", "rwlock:")):
            return False
        _, _, tail = rest.partition(":")
        return tail.startswith("d:")
