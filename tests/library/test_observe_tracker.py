"""How an observer turns reads and its own guards' events into changes (lockyard.observe).

The rules the conformance suite cannot provoke on demand: a read older than what is known is
ignored, a term seen ending is ``expired`` only once its lease end has passed, and two estimates
of one lease end within their round trips are not an extension.
"""

from __future__ import annotations

from lockyard.locks import LockInfo
from lockyard.observe import Change, _Tracker


def info(token: int, left_ms: int = 1000, owner: str = "owner-token") -> LockInfo:
    return LockInfo("lock", f"{owner}-{token}", token, left_ms)


def kinds(changes: list[Change]) -> list[tuple[str, int]]:
    return [(kind, lock.fencing_token) for kind, lock in changes]


def test_the_first_read_of_a_held_lock_is_an_acquisition() -> None:
    tracker = _Tracker()
    assert kinds(tracker.seen("lock", info(3), started=10.0, error=0.001)) == [("acquired", 3)]
    assert tracker.seen("lock", info(3, 999), started=10.001, error=0.001) == []


def test_an_older_term_read_late_is_ignored() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(5), started=10.0, error=0.001)
    assert tracker.seen("lock", info(4), started=10.5, error=0.001) == []
    assert tracker.held["lock"].info.fencing_token == 5


def test_a_newer_term_ends_the_known_one_first() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=1000), started=10.0, error=0.001)
    # Before the known lease could have ended: the holder released it.
    assert kinds(tracker.seen("lock", info(2), started=10.5, error=0.001)) == [
        ("released", 1),
        ("acquired", 2),
    ]
    # After it: the lease expired.
    assert kinds(tracker.seen("lock", info(3), started=20.0, error=0.001)) == [
        ("expired", 2),
        ("acquired", 3),
    ]


def test_a_free_lock_ends_the_term_as_released_or_expired() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=1000), started=10.0, error=0.001)
    assert kinds(tracker.seen("lock", None, started=10.2, error=0.001)) == [("released", 1)]
    tracker.seen("lock", info(2, left_ms=1000), started=11.0, error=0.001)
    assert kinds(tracker.seen("lock", None, started=12.5, error=0.001)) == [("expired", 2)]
    assert tracker.seen("lock", None, started=13.0, error=0.001) == []


def test_a_slow_read_answered_after_the_lease_end_sees_it_expire() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=1000), started=10.0, error=0.001)
    # Began 0.3 s before the lease end, answered 0.1 s after it: the lease may have expired.
    assert kinds(tracker.seen("lock", None, started=10.7, error=0.4)) == [("expired", 1)]
    tracker.seen("lock", info(2, left_ms=1000), started=20.0, error=0.001)
    # Answered before the (early) estimate of the lease end: it was released.
    assert kinds(tracker.seen("lock", None, started=20.5, error=0.4)) == [("released", 2)]


def test_an_extension_is_a_lease_end_moved_beyond_the_reads_errors() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=1000), started=10.0, error=0.030)
    # 20 ms later by the estimate, within the first read's 30 ms round trip: the same lease.
    assert tracker.seen("lock", info(1, left_ms=520), started=10.5, error=0.001) == []
    # Renewed: the end moved by 400 ms.
    assert kinds(tracker.seen("lock", info(1, left_ms=900), started=10.5, error=0.001)) == [
        ("extended", 1)
    ]


def test_a_break_through_this_connection_ends_the_term_as_broken() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1), started=10.0, error=0.001)
    tracker.broken("lock")
    assert kinds(tracker.seen("lock", None, started=10.1, error=0.001)) == [("broken", 1)]
