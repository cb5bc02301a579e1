"""``python -m lockyard_operator`` as a child process, for the e2e tests and ``make chaos``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.servers.process import free_port

HEALTHY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# kopf logs a refused Event as "Failed to post an event" and carries on, so a missing
# events/create verb would otherwise pass unnoticed; "forbidden" is any other refused call.
_TROUBLE_MARKERS = ("forbidden", "failed to post an event", "traceback (most recent call last)")


class OperatorProcess:
    """One operator process with its own health and metrics ports, logging to ``log``."""

    def __init__(self, kubeconfig: Path, args: Sequence[str], log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.args = [
            *args,
            # Loopback only, as the suite's servers: the host's other addresses are not ours.
            "--bind-address=127.0.0.1",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        if not any(arg.startswith("--workdir") for arg in args):
            # Beside its log, not a fresh folder in /tmp: a killed operator cannot remove that.
            self.args.append(f"--workdir={log.parent / (log.stem + '-workdir')}")
        self.process: subprocess.Popen[bytes] | None = None
        #: ``time.monotonic()`` at the last start.
        self.started_at = 0.0

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lockyard_operator", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C meant for the harness must not kill it mid-run.
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        return 0 if self.process is None else self.process.pid

    def healthy(self) -> bool:
        """kopf's liveness endpoint answers 200."""
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    async def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_S) -> float | None:
        """Seconds from the start until it was healthy, or ``None`` if it exited or timed out."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.healthy):
            if not self.running or time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)
        return time.monotonic() - self.started_at

    def metrics(self) -> str:
        """The Prometheus exposition text of its metrics endpoint."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, and SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def troubles(self) -> list[str]:
        """Log lines showing a refused API call, a lost Event or a crash."""
        return [line for line in self.log().splitlines() if is_trouble(line)]


def is_trouble(line: str) -> bool:
    lowered = line.lower()
    return any(marker in lowered for marker in _TROUBLE_MARKERS)
