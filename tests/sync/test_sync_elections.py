"""Leader elections and lock observation through the blocking API (real Redis)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import lockyard.sync
from lockyard import LockLostError
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def ly(redis_server: RedisServer) -> Iterator[lockyard.sync.Connection]:
    with lockyard.sync.connect(redis_server.url(f"e{uuid.uuid4().hex[:10]}")) as handle:
        yield handle
        handle.store.purge()


def election() -> str:
    return f"election-{uuid.uuid4().hex[:8]}"


def test_a_campaign_block_leads_and_the_next_candidate_waits_its_turn(
    ly: lockyard.sync.Connection,
) -> None:
    name = election()
    # Leadership here passes by resigning, never by a lapse: a TTL that outlasts any pause a
    # loaded machine puts between the campaign and the block.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with ly.elections.campaign(name, "alpha", ttl=10) as alpha:
            assert alpha.is_leader
            leader = ly.elections.leader(name)
            assert leader is not None
            assert (leader.identity, leader.term) == ("alpha", alpha.term)
            waiting = pool.submit(lambda: ly.elections.campaign(name, "beta", ttl=10).wait())
            time.sleep(0.3)
            assert not waiting.done()
            alpha_term = alpha.term
        # Leaving the block resigned: beta takes over.
        beta = waiting.result(10)
    assert beta.term > alpha_term
    assert beta.is_leader
    current = ly.elections.leader(name)
    assert current is not None
    assert current.identity == "beta"
    assert beta.resign()
    assert not beta.resign()
    assert ly.elections.leader(name) is None


def test_a_term_renewed_in_the_background_and_then_broken_sets_lost(
    ly: lockyard.sync.Connection,
) -> None:
    name = election()
    # Renewed every third of the TTL: each renewal has 0.85 s to land before the loss margin
    # (10 % of the TTL) is reached, room for the pauses a loaded machine makes.
    leadership = ly.elections.campaign(name, "solo", ttl=1.5).wait()
    time.sleep(3.5)  # several renewals
    assert leadership.is_leader
    assert ly.elections.break_leadership(name)
    assert leadership.lost.wait(10)
    assert not leadership.is_leader
    assert not leadership.resign()


def test_a_lost_term_reaches_the_thread_in_the_block(ly: lockyard.sync.Connection) -> None:
    name = election()
    with pytest.raises(LockLostError), ly.elections.campaign(name, "alpha", ttl=0.6) as lead:
        assert ly.elections.break_leadership(name)
        assert lead.lost.wait(10)
        ly.store.get("ns:acme:state:after-the-loss")  # the next Lockyard call raises


def test_observing_a_lock_from_a_thread(ly: lockyard.sync.Connection) -> None:
    name = f"observed-{uuid.uuid4().hex[:8]}"
    with ly.locks.observe(name) as events:
        acquired = threading.Event()

        def hold_briefly() -> None:
            with ly.locks.hold(name, 5):
                acquired.set()
                time.sleep(0.2)

        worker = threading.Thread(target=hold_briefly)
        worker.start()
        seen = [next(events), next(events)]
        worker.join()
    assert [event.kind for event in seen] == ["acquired", "released"]
    assert seen[0].fencing_token == seen[1].fencing_token
