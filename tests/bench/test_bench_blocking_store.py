"""The blocking store table (lockyard_dev.bench.sync_store) measures both subjects, every
operation and thread count, on a real server, and the report lays them out."""

from __future__ import annotations

import uuid

import lockyard.sync
from lockyard.config import RedisConfig, parse_url
from lockyard_dev.bench.report import blocking_store_table
from lockyard_dev.bench.results import Results
from lockyard_dev.bench.sync_store import (
    LOCKYARD_SYNC,
    REDIS_PY_SYNC,
    SYNC_STORE_OPS,
    SYNC_THREADS,
    _measure,
)
from lockyard_dev.servers.redis import RedisServer


def test_both_subjects_are_measured_and_reported(redis_server: RedisServer) -> None:
    config = parse_url(redis_server.url(f"bench-sync-{uuid.uuid4().hex[:6]}"))
    assert isinstance(config, RedisConfig)
    results = Results({}, {})
    try:
        _measure(results, config, 0, 60, 5.0)
    finally:
        with lockyard.sync.connect(config) as ly:  # the bench's purge does this in a run
            ly.store.purge()
    measured = {(r.subject, r.op) for r in results.records if r.section == "sync"}
    assert measured == {
        (subject, f"{op}@{threads}")
        for subject in (LOCKYARD_SYNC, REDIS_PY_SYNC)
        for op in SYNC_STORE_OPS
        for threads in SYNC_THREADS
    }
    assert all(r.metrics["ops_per_s"] > 0 for r in results.records)
    headers, rows = blocking_store_table(results, "redis")
    assert headers[:2] == ["operation", "library"]
    assert len(headers) == 2 + 3 * len(SYNC_THREADS)
    assert [row[:2] for row in rows] == [
        [op, subject] for op in SYNC_STORE_OPS for subject in (LOCKYARD_SYNC, REDIS_PY_SYNC)
    ]
    with redis_server.admin() as admin:  # the raw client's keys are gone
        assert not admin.keys(f"{config.prefix}:raw-sync:*")
