"""Conformance: literal, kind-anchored scans (spec section 3, ``scan_keys*``)."""

from __future__ import annotations

import pytest

from lockyard.connection import Connection
from lockyard.testing.fixtures import ConformanceBase, key

WILDCARDS = ["_", "%", "*", "?", "[", "]", "[a-z]", "\\", "%%", ".*"]


@pytest.mark.asyncio
class ScanConformance(ConformanceBase):
    async def test_scan_keys_returns_every_live_key_of_the_kind_once(self, ly: Connection) -> None:
        expected = set()
        for i in range(30):
            k = key("event_state", f"e{i}")
            await ly.store.set(k, f"v{i}")
            await ly.store.set(k, f"v{i}")
            expected.add((k, f"v{i}"))
        await ly.store.set(key("event_state", "other", tenant="beta"), "x")
        await ly.store.set(key("event_state", "other", ns="ns2"), "x")
        await ly.store.set(key("event_stat", "near-miss"), "x")
        await ly.store.set(key("event_state_x", "near-miss"), "x")
        found = await ly.store.scan_keys("ns", "acme", "event_state")
        assert len(found) == len(expected)
        assert set(found) == expected

    async def test_scan_prefix_is_literal(self, ly: Connection) -> None:
        stored = {}
        for i, wildcard in enumerate(WILDCARDS):
            k = key("group", f"{wildcard}id{i}")
            stored[wildcard] = k
            await ly.store.set(k, wildcard)
        await ly.store.set(key("group", "plain"), "plain")
        for wildcard, k in stored.items():
            found = await ly.store.scan_keys("ns", "acme", "group", prefix=wildcard)
            keys = {found_key for found_key, _ in found}
            assert k in keys
            assert all(found_key.startswith(f"ns:acme:group:{wildcard}") for found_key in keys)

    async def test_scan_prefix_matches_ids_with_colons(self, ly: Connection) -> None:
        await ly.store.set("ns:acme:chain:ns:t:act-1", "a")
        await ly.store.set("ns:acme:chain:ns:t:act-2", "b")
        await ly.store.set("ns:acme:chain:ns:u:act-3", "c")
        found = await ly.store.scan_keys("ns", "acme", "chain", prefix="ns:t:")
        assert set(found) == {("ns:acme:chain:ns:t:act-1", "a"), ("ns:acme:chain:ns:t:act-2", "b")}

    async def test_scans_hide_expired_keys(self, ly: Connection) -> None:
        await ly.store.set(key("silence", "gone"), "x", ttl=self.short_ttl_s)
        await ly.store.set(key("silence", "kept"), "y")
        await self.expire()
        assert await ly.store.scan_keys("ns", "acme", "silence") == [(key("silence", "kept"), "y")]
        assert await ly.store.scan_keys_by_kind("silence") == [(key("silence", "kept"), "y")]

    async def test_scan_by_kind_spans_namespaces_and_tenants(self, ly: Connection) -> None:
        expected = {
            (key("approval", "a1", ns="n1", tenant="t1"), "1"),
            (key("approval", "a2", ns="n2", tenant="t1"), "2"),
            (key("approval", "a:3", ns="n2", tenant="t2"), "3"),
        }
        for k, v in expected:
            await ly.store.set(k, v)
        await ly.store.set(key("approvals", "x"), "no")
        await ly.store.set(key("pending_approvals", "x"), "no")
        found = await ly.store.scan_keys_by_kind("approval")
        assert len(found) == 3
        assert set(found) == expected

    async def test_scans_never_include_locks_or_index_entries(self, ly: Connection) -> None:
        guard = await ly.locks.try_acquire("ns:acme:lock:x", 5)
        assert guard is not None
        await ly.store.index_timeout(key("lock", "only-indexed"), 1)
        await ly.store.index_chain_ready(key("lock", "only-chained"), 1)
        assert await ly.store.scan_keys_by_kind("lock") == []
        assert await ly.store.scan_keys("ns", "acme", "lock") == []
        await ly.store.set("ns:acme:lock:x", "data")
        assert await ly.store.scan_keys_by_kind("lock") == [("ns:acme:lock:x", "data")]
        assert await guard.is_held()
        await guard.release()
        assert await ly.store.get("ns:acme:lock:x") == "data"

    async def test_scan_arguments_are_validated(self, ly: Connection) -> None:
        with pytest.raises(ValueError, match="kind"):
            await ly.store.scan_keys("ns", "acme", "a:b")
        with pytest.raises(ValueError, match="namespace"):
            await ly.store.scan_keys("", "acme", "kind")
        with pytest.raises(ValueError, match="kind"):
            await ly.store.scan_keys_by_kind("")
