"""Where each logical object of one store prefix lives in Redis.

Every key starts with ``lockyard:{P|`` (``P`` = the prefix); the part in braces is the Redis
Cluster hash tag, so every key one operation touches is in one slot. The table of keys, their
types and what they hold is in docs/backends/redis.md.
"""

from __future__ import annotations

KEY_ROOT = "lockyard"


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (``SCAN MATCH``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class KeyLayout:
    """The key names of one prefix (see docs/backends/redis.md, *Data layout*)."""

    __slots__ = (
        "_kinds",
        "chain_index",
        "expiry_pattern",
        "lease_pattern",
        "lock_prefix",
        "purge_pattern",
        "release_channel",
        "sweep_lease",
        "tag",
        "timeout_index",
    )

    def __init__(self, prefix: str) -> None:
        self.tag = f"{KEY_ROOT}:{{{prefix}|"
        self.timeout_index = f"{self.tag}}}:timeout"
        self.chain_index = f"{self.tag}}}:chain"
        self.release_channel = f"{self.tag}}}:released"
        self.sweep_lease = f"{self.tag}}}:sweep"
        self.lock_prefix = f"{self.tag}lock:"
        self.purge_pattern = glob_escape(self.tag) + "*"
        self.lease_pattern = glob_escape(self.lock_prefix) + "*}:lease"
        self.expiry_pattern = glob_escape(self.tag) + "*}:x"
        self._kinds: dict[str, tuple[str, str, str]] = {}

    def kind(self, kind: str) -> tuple[str, str, str]:
        """(data-key prefix, index, expiry set) of ``kind``."""
        keys = self._kinds.get(kind)
        if keys is None:
            base = f"{self.tag}{kind}}}"
            keys = (base + ":d:", base + ":i", base + ":x")
            if len(self._kinds) < 4096:
                self._kinds[kind] = keys
        return keys

    def data(self, key: str) -> str:
        return self.kind(key.split(":", 3)[2])[0] + key

    def for_key(self, key: str) -> tuple[str, str, str]:
        """(data hash, index, expiry set) of a canonical key."""
        prefix, index, expiries = self.kind(key.split(":", 3)[2])
        return prefix + key, index, expiries

    def time_index(self, index: str) -> str:
        return self.timeout_index if index == "timeout" else self.chain_index

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
        if rest.startswith(("}:", "lock:")):
            return False
        _, _, tail = rest.partition(":")
        return tail.startswith("d:")
