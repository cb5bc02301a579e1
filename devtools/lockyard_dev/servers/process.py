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
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from lockyard_dev.servers import orphans

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


#: ``free_port`` hands out ports below the kernel's ephemeral range (32768-60999 by default),
#: each process group of the suite from its own slice. A port the kernel picked (``bind`` to 0)
#: was free a moment ago, but by the time a server binds it another pytest-xdist worker may have
#: been handed the same one, or an outgoing connection taken it: in CI an operator died on
#: EADDRINUSE that way. Slice 0 is for processes outside pytest-xdist, slice N+1 for worker gwN
#: (and the processes it starts, which inherit $PYTEST_XDIST_WORKER); within a slice each
#: process starts at an offset of its own and moves on, never reusing a port soon.
PORT_SLICE_BASE = 10_000
PORT_SLICE_SIZE = 2_400
PORT_SLICES = 9
_port_lock = threading.Lock()
_port_cursor: int | None = None


def _forget_port_cursor() -> None:
    global _port_cursor
    _port_cursor = None  # a forked child starts at its own offset, not its parent's


os.register_at_fork(after_in_child=_forget_port_cursor)


def _port_slice() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return 0
    return 1 + int(worker[2:]) % (PORT_SLICES - 1)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1, free now and handed to no other caller of this suite soon."""
    global _port_cursor
    first = PORT_SLICE_BASE + _port_slice() * PORT_SLICE_SIZE
    with _port_lock:
        if _port_cursor is None:
            _port_cursor = (os.getpid() * 97) % PORT_SLICE_SIZE
        for _ in range(PORT_SLICE_SIZE):
            _port_cursor = (_port_cursor + 1) % PORT_SLICE_SIZE
            if _bindable(first + _port_cursor):
                return first + _port_cursor
    raise ServerStartError(f"no free port in {first}-{first + PORT_SLICE_SIZE - 1}")


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
        orphans.reap_once()
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
        orphans.track(self.name, self.process.pid, self.log_path.parent)

    def forget(self) -> None:
        """The process was stopped here (or exited): nothing for a later run to reap."""
        if self.process is not None:
            orphans.forget(self.process.pid)

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
            self.forget()
            return
        process.send_signal(signal.SIGCONT)  # a frozen process handles no other signal
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        self.forget()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a clean shutdown."""
        self.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections and data, but nothing answers."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGCONT)


class OneProcessControls:
    """``stop``, ``kill``, ``freeze``, ``thaw`` and ``running`` of a harness that is one
    :class:`ServerProcess` (``self.process``): a Redis server, moto."""

    process: ServerProcess

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a clean shutdown."""
        self.process.kill()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered (a hung host)."""
        self.process.freeze()

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self.process.thaw()

    @property
    def running(self) -> bool:
        return self.process.running
