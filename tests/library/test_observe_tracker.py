"""How an observer turns reads and its own guards' events into changes (lockyard.observe).

The rules the conformance suite cannot provoke on demand: a read older than what is known is
ignored, a term seen ending is ``expired`` only once its lease end has passed, and two estimates
of one lease end within their round trips are not an extension.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from lockyard.locks import LockGuard, LockInfo
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
    tracker.breaking["lock"] = 1
    tracker.break_ended("lock", broken=True)
    assert kinds(tracker.seen("lock", None, started=10.1, error=0.001)) == [("broken", 1)]


def test_a_read_that_raced_this_connections_break_waits_for_its_result() -> None:
    """A read answered while the break was under way found the lock free: a release for all it
    knows (under load, the ``broken`` event once lost that race)."""
    tracker = _Tracker()
    tracker.seen("lock", info(1), started=10.0, error=0.001)
    tracker.breaking["lock"] = 1
    assert tracker.seen("lock", None, started=10.1, error=0.001) == []
    tracker.break_ended("lock", broken=True)
    assert tracker.breaking == {}
    assert kinds(tracker.seen("lock", None, started=10.2, error=0.001)) == [("broken", 1)]


def test_a_release_told_after_this_connections_break_still_ends_it_as_broken() -> None:
    """The holder's release (which found nothing) can be told before a read sees the lock
    free: the term still ended with the break. Once reported ``released`` under load."""
    tracker = _Tracker()
    tracker.seen("lock", info(1), started=10.0, error=0.001)
    tracker.breaking["lock"] = 1
    tracker.break_ended("lock", broken=True)
    holder = SimpleNamespace(
        name="lock", owner="owner-token-1", fencing_token=1, lease_ms=1000, lease_deadline=11.0
    )
    released = tracker.guard_event("released", cast("LockGuard", holder), now=10.2)
    assert kinds(released) == [("broken", 1)]
    assert tracker.held == {}


def test_a_break_that_found_nothing_leaves_the_end_to_the_reads() -> None:
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=1000), started=10.0, error=0.001)
    tracker.breaking["lock"] = 1
    assert tracker.seen("lock", None, started=10.1, error=0.001) == []
    tracker.break_ended("lock", broken=False)  # released by its holder before the break
    assert kinds(tracker.seen("lock", None, started=10.2, error=0.001)) == [("released", 1)]


def test_a_read_after_a_slow_extension_is_not_another_extension() -> None:
    """The guard's own deadline counts from the start of its call: a call that waited 300 ms for
    its turn (a loaded machine) began its lease that much later, which a read then sees. Once
    two ``extended`` events were reported for one extension."""
    tracker = _Tracker()
    tracker.seen("lock", info(1, left_ms=30_000), started=10.0, error=0.001)
    extended = SimpleNamespace(
        name="lock", owner="owner-token-1", fencing_token=1, lease_ms=60_000, lease_deadline=70.0
    )  # extend(60) called at 10.0, answered, and its event applied at 10.3
    guard = cast("LockGuard", extended)
    assert kinds(tracker.guard_event("extended", guard, now=10.3)) == [("extended", 1)]
    # The backend's lease began at 10.29: a read from 10.3 finds 59.99 s left (ends 70.29).
    assert tracker.seen("lock", info(1, left_ms=59_990), started=10.3, error=0.005) == []
