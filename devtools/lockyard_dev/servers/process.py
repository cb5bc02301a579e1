"""Start and stop one server process: free ports, readiness waits, logs on failure.

:class:`ServerProcess` is one child process with its log file; :class:`ServerHarness` is the
``with`` behaviour every harness shares: start on entry, and clean up (stop, delete the folder) on
exit or when the start fails, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

#: Set by ``make unit``: the fast tier runs only tests that need no server, and a test that
#: starts one anyway fails here, naming the marker it lacks, instead of slowing the tier down.
NO_SERVERS_ENV = "LOCKYARD_NO_SERVERS"


class ServerStartError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


def refuse_without_servers(name: str) -> None:
    """Raise :class:`ServerStartError` if ``$LOCKYARD_NO_SERVERS`` forbids starting ``name``."""
    if os.environ.get(NO_SERVERS_ENV):
        raise ServerStartError(
            f"{name} not started: ${NO_SERVERS_ENV} is set (the `make unit` tier); a test that "
            "needs a server must carry its marker (redis, sentinel, postgres, dynamodb, k8s)"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def require_binary(name: str, hint: str, extra_dirs: Sequence[str] = ()) -> str:
    """The path of ``name`` (on PATH or in ``extra_dirs``), or an error saying how to install it."""
    for folder in extra_dirs:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name} is not installed: {hint}")
    return found


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerHarness(abc.ABC):
    """A server (or a set of them) used as a context manager; see the module docstring."""

    @abc.abstractmethod
    def start(self) -> object:
        """Start and wait until ready; on failure, stop whatever did start."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and delete what the harness made; safe to call at any time, and again."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServerProcess:
    """One child process with its log file; ``stop()`` ends only this process.

    ``run_as`` is a (uid, gid) to run it as, with no supplementary groups (root only).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.run_as = run_as
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        refuse_without_servers(self.name)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                user=self.run_as[0] if self.run_as else None,
                group=self.run_as[1] if self.run_as else None,
                extra_groups=[] if self.run_as else None,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerStartError(
                    f"{self.name} exited during start-up:\n{log_tail(self.log_path)}"
                )
            if ready():
                return
            time.sleep(0.05)
        raise ServerStartError(
            f"{self.name} was not ready after {timeout:g}s:\n{log_tail(self.log_path)}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a clean shutdown."""
        self.stop(signal.SIGKILL)
