"""One long-running child process of the node (containerd, kubelet, kube-scheduler)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.servers.process import log_tail


class Daemon:
    """``argv`` in its own session (a Ctrl-C for the harness must not reach it), logs to ``log``."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, keep_fds: Sequence[int] = ()
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.keep_fds = tuple(keep_fds)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self.keep_fds,
            )

    def exited(self) -> str | None:
        """Why it is not running (with its log's tail), or None while it runs."""
        if self.process is None:
            return f"{self.name} was never started"
        code = self.process.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; last lines of {self.log}:\n{self.tail()}"

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; only the process this object started."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (the run folder's unique path).

    containerd's shims are started by containerd in their own sessions and outlive it: the only
    handle on them is the socket path of *our* containerd on their command line.
    """
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
    return found


def kill_and_wait(pids: Sequence[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would still answer; reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    return Path(f"/proc/{pid}").exists() and _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
