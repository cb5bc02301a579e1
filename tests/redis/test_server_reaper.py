"""Servers a dead run left behind are reaped by the next (``lockyard_dev.servers.orphans``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lockyard_dev.servers import orphans
from lockyard_dev.servers.process import port_open
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

# A run that dies as a CI timeout kills it: SIGKILL, so no harness gets to stop its server.
DYING_RUN = """
import json, os, signal
from lockyard_dev.servers.redis import RedisServer
server = RedisServer().start()
print(json.dumps({"pid": server.process.process.pid, "port": server.port,
                  "folder": str(server.folder)}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def gone(pid: int, port: int, timeout: float = 10.0) -> bool:
    """The process has exited and its port no longer answers (the kernel closes it after)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if orphans.start_time(pid) is None and not port_open(port):
            return True
        time.sleep(0.05)
    return False


def test_a_server_left_by_a_run_that_died_is_reaped_with_its_folder() -> None:
    run = subprocess.run(
        [sys.executable, "-c", DYING_RUN], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == -9, run.stderr
    left = json.loads(run.stdout)
    assert orphans.start_time(left["pid"]) is not None  # still serving, its starter dead
    assert port_open(left["port"])
    assert Path(left["folder"]).is_dir()
    said: list[str] = []
    reaped = orphans.reap(said.append)
    mine = [line for line in reaped if f"(pid {left['pid']})" in line]
    assert len(mine) == 1, reaped
    assert "reaped redis" in mine[0]
    assert said == reaped
    assert gone(left["pid"], left["port"])
    assert not Path(left["folder"]).exists()
    assert not (orphans.REGISTRY / str(left["pid"])).exists()


def test_the_servers_of_a_live_run_are_left_alone() -> None:
    with RedisServer() as server:
        popen = server.process.process
        assert popen is not None
        pid = popen.pid
        assert (orphans.REGISTRY / str(pid)).exists()  # recorded while it runs
        assert not [line for line in orphans.reap(lambda _: None) if f"(pid {pid})" in line]
        assert port_open(server.port)
        assert server.folder.is_dir()
    assert not (orphans.REGISTRY / str(pid)).exists()  # forgotten once stopped
