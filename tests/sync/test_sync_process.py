"""A blocking handle across ``os.fork()`` and at interpreter exit (real Redis).

A forked child (Celery prefork, gunicorn) reconnects on its first call and never speaks on the
parent's sockets: parent and child hammer the same handle at once, and both get the right
answers. A handle still open at exit is closed: a ``hold()`` block still running in a daemon
thread gives its lock back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import Iterator

import pytest

import lockyard.sync
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

ROUNDS = 300


@pytest.fixture
def ly(redis_server: RedisServer) -> Iterator[lockyard.sync.Connection]:
    with lockyard.sync.connect(redis_server.url(f"f{uuid.uuid4().hex[:10]}")) as handle:
        yield handle
        handle.store.purge()


def run_in_child(body: object) -> int:
    """Fork; the child runs ``body()`` and exits 0, or prints the traceback and exits 1."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()  # type: ignore[operator]
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def test_a_forked_child_reconnects_and_never_shares_the_parents_sockets(
    ly: lockyard.sync.Connection,
) -> None:
    parent_key, child_key = "ns:acme:state:parent", "ns:acme:state:child"
    ly.store.set(parent_key, "p")
    guard = ly.locks.acquire("parents-lock", 30, timeout=1)
    parent_loop = ly._portal.thread

    def child() -> None:
        assert ly._portal.thread is None  # the parent's loop thread did not survive the fork
        for number in range(ROUNDS):
            ly.store.set(child_key, f"c{number}")
            assert ly.store.get(child_key) == f"c{number}"
            assert ly.store.get(parent_key) == "p"
        with ly.locks.hold("childs-lock", 5):
            assert ly.locks.try_acquire("childs-lock", 5) is None
        with pytest.raises(RuntimeError, match="fork"):
            guard.is_held()  # the parent's guard: the child must not renew or release it
        ly.close()

    pid = run_in_child(child)
    for number in range(ROUNDS):  # at the same time, on the same handle
        ly.store.set(parent_key, "p")
        assert ly.store.increment("ns:acme:counter:parent", 1) == number + 1
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ly._portal.thread is parent_loop
    assert ly.store.get(child_key) == f"c{ROUNDS - 1}"
    assert guard.is_held()
    guard.release()


def test_a_child_forked_inside_a_hold_block_leaves_the_parents_lock_alone(
    ly: lockyard.sync.Connection,
) -> None:
    # Renewed every 0.5 s, each renewal with 0.85 s to land: the parent's connection must
    # keep renewing after the fork, and the wait below spans two renewals.
    with ly.locks.hold("held-across-fork", 1.5) as guard:

        def child() -> None:
            with ly.locks.hold("in-child", 5):  # the child's own work, on its own connection
                pass

        pid = run_in_child(child)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        time.sleep(1.0)
        assert guard.is_held()
    assert not guard.lost.is_set()


def test_at_interpreter_exit_an_open_handle_closes_and_a_running_hold_releases(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url(f"x{uuid.uuid4().hex[:10]}")
    script = textwrap.dedent(
        """
        import sys, threading, time
        import lockyard.sync

        ly = lockyard.sync.connect(sys.argv[1])
        ly.store.set("ns:acme:state:ran", "yes")
        inside = threading.Event()

        def hold_forever():
            with ly.locks.hold("held-at-exit", 60):
                inside.set()
                time.sleep(3600)

        threading.Thread(target=hold_forever, daemon=True).start()
        assert inside.wait(30)
        # The main thread returns: the handle is never closed by hand.
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    with lockyard.sync.connect(url) as ly:
        assert ly.store.get("ns:acme:state:ran") == "yes"
        # Released at exit, long before its 60 s TTL.
        guard = ly.locks.try_acquire("held-at-exit", 5)
        assert guard is not None
        guard.release()
        ly.store.purge()


def test_a_fork_while_another_thread_waits_on_the_handle(ly: lockyard.sync.Connection) -> None:
    holder = ly.locks.acquire("busy", 30, timeout=1)
    got: list[lockyard.sync.LockGuard] = []
    waiter = threading.Thread(target=lambda: got.append(ly.locks.acquire("busy", 30, 30)))
    waiter.start()

    def child() -> None:
        # The waiting thread is gone here; its call in flight is the parent's business.
        assert ly.ping() >= 0
        assert ly.locks.try_acquire("busy", 5) is None
        ly.close()

    pid = run_in_child(child)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    holder.release()
    waiter.join(30)
    assert got
    got[0].release()
