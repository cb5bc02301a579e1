"""Throw-away PostgreSQL 15 clusters for tests, benchmarks and the demo.

:class:`PostgresServer` runs ``initdb`` in a fresh temporary folder and starts ``postgres`` on a
free 127.0.0.1 port, with password (SCRAM-SHA-256) authentication over TCP, so URLs look like
production ones: ``postgresql://lockyard:PASSWORD@127.0.0.1:PORT/postgres``. ``stop()`` is a fast
shutdown (clients disconnected, a checkpoint written) and ``kill()`` a crash (SIGKILL to every
server process); ``start()`` afterwards reuses the same port and data folder, which is what the
restart tests need. ``close()`` stops the server and deletes the folder.

initdb refuses to run as root, so when we are root both it and the server run as the ``postgres``
OS user (the folder is handed to that user). ``fsync=off`` by default: it only matters when the
operating system itself crashes; a killed server loses nothing that was committed, because
``synchronous_commit`` stays on.

With ``tls=True`` a test CA and a server certificate for ``localhost`` and ``127.0.0.1`` are made
with :mod:`lockyard_dev.servers.tls` and ``ssl=on`` is set, so ``sslmode=verify-full`` can be
tested end to end; that module also makes further CAs and client certificates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, urlencode

from lockyard_dev.servers import orphans
from lockyard_dev.servers.process import (
    ServerHarness,
    ServerProcess,
    ServerStartError,
    free_port,
    log_tail,
    refuse_without_servers,
    require_binary,
)
from lockyard_dev.servers.tls import CertificateAuthority, make_ca, make_server_certificate

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin")
INSTALL_HINT = "install PostgreSQL 15 (make system-deps, or apt-get install postgresql-15)"

#: Settings for a fast, disposable server (see the module docstring about fsync).
FAST_SETTINGS = {
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "300",
    "log_min_messages": "warning",
    "log_connections": "off",
    "jit": "off",
}


def pg_binary(name: str) -> str:
    return require_binary(name, INSTALL_HINT, PG_BIN_DIRS)


class _PostgresProcess(ServerProcess):
    """The postmaster itself (no wrapper), whose signals reach every process it forked."""

    def __init__(
        self, argv: list[str], log_path: Path, cwd: Path, run_as: tuple[int, int] | None
    ) -> None:
        super().__init__("postgres", argv, log_path, env=_server_env(), cwd=cwd, run_as=run_as)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to the postmaster and every process it forked.

        Each PostgreSQL child calls setsid(), so a process-group signal would miss them; they
        are found by their parent pid instead (collected before any of them is signalled).
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        for pid in [process.pid, *orphans.children_by_parent().get(process.pid, [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        """Shut down (SIGINT: fast shutdown); thaws a frozen server first, kills on timeout."""
        process = self.process
        if process is None or process.poll() is not None:
            self.forget()
            return
        self.signal_all(signal.SIGCONT)
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.forget()

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, like a crash."""
        process = self.process
        if process is None or process.poll() is not None:
            self.forget()
            return
        self.signal_all(signal.SIGKILL)
        process.wait(10)
        self.forget()


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")
    return env


class PostgresServer(ServerHarness):
    """One disposable PostgreSQL cluster. Use as a context manager, or ``start()``/``close()``."""

    def __init__(
        self,
        *,
        tls: bool = False,
        user: str = "lockyard",
        password: str | None = None,
        listen: tuple[str, ...] = ("127.0.0.1",),
        settings: dict[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.user = user
        self.password = password or secrets.token_urlsafe(12)
        self.listen = listen
        self.host = listen[0]
        self.database = "postgres"
        self.settings = {**FAST_SETTINGS, "fsync": "off", **(settings or {})}
        self.port: int | None = None
        self.base = Path(tempfile.mkdtemp(prefix="lockyard-pg-"))
        self.data_dir = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.ca: CertificateAuthority | None = None
        self._run_as = _postgres_os_user() if os.geteuid() == 0 else None
        self._initialized = False
        self._process: _PostgresProcess | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Start the server (initialising the cluster the first time); same port on restarts."""
        refuse_without_servers("PostgreSQL")
        if not self._initialized:
            self._initialize()
        attempts = 1 if self.port is not None else 3
        for attempt in range(attempts):
            if self.port is None or attempt:
                self.port = free_port()
            self._process = _PostgresProcess(
                self._argv(), self.log_path, cwd=self.base, run_as=self._run_as
            )
            self._process.start()
            try:
                self._process.wait_ready(self._ready, timeout)
                return self
            except ServerStartError:
                self._process.kill()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: disconnect clients, checkpoint, exit. Committed data stays."""
        if self._process is not None:
            self._process.stop(signal.SIGINT, timeout)

    def begin_smart_shutdown(self) -> None:
        """SIGTERM: new logins are refused ("the database system is shutting down", SQLSTATE
        57P03) and the server exits once its last session ends."""
        if self._process is not None and self._process.process is not None:
            self._process.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Crash the server (SIGKILL to all its processes); the next start recovers from WAL."""
        if self._process is not None:
            self._process.kill()

    def freeze(self) -> None:
        """SIGSTOP every server process: sockets stay open but nothing answers (a hung host)."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: int) -> None:
        if self._process is not None:
            self._process.signal_all(sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def close(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- addresses -------------------------------------------------------------------------
    def url(
        self,
        *,
        host: str | None = None,
        password: str | None = None,
        database: str | None = None,
        **params: str,
    ) -> str:
        """``postgresql://user:password@host:port/db?params`` for this server."""
        auth = f"{quote(self.user, safe='')}:{quote(password or self.password, safe='')}"
        query = f"?{urlencode(params)}" if params else ""
        where = f"{host or self.host}:{self.port}/{database or self.database}"
        return f"postgresql://{auth}@{where}{query}"

    def dsn(self) -> str:
        """A libpq/asyncpg DSN without lockyard parameters (for raw drivers in tests)."""
        return self.url(sslmode="disable")

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    # -- internals -------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        assert self.port is not None
        argv = [
            pg_binary("postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.base),
            "-c", f"listen_addresses={','.join(self.listen)}",
        ]  # fmt: skip
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        if self.tls:
            # ssl_ca_file makes the server ask for (not require) a client certificate.
            argv += ["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"]
            argv += ["-c", "ssl_key_file=server.key", "-c", "ssl_ca_file=ca.crt"]
        return argv

    def _ready(self) -> bool:
        """Our postmaster's pid file says ``ready`` (not merely a listening socket).

        The pid must be checked: after a crash the old file still says ``ready``.
        """
        process = self._process.process if self._process is not None else None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            process is not None
            and len(lines) >= 8
            and lines[0].strip() == str(process.pid)
            and lines[7].strip() == "ready"
        )

    def _initialize(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._hand_over(self.base)
        self._hand_over(pwfile)
        argv = [
            pg_binary("initdb"),
            "-D", str(self.data_dir),
            "-U", self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=_server_env(),
            cwd=self.base,
            user=self._run_as[0] if self._run_as else None,
            group=self._run_as[1] if self._run_as else None,
            extra_groups=[] if self._run_as else None,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.0/8 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        if self.tls:
            self.ca = make_ca(self.base / "tls")
            cert, key = make_server_certificate(self.ca, self.base / "tls")
            for source in (cert, key, self.ca.cert_file):
                target = self.data_dir / source.name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                self._hand_over(target)
        self._hand_over(self.data_dir / "pg_hba.conf")
        self._initialized = True

    def _hand_over(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, *self._run_as)


def _postgres_os_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerStartError(
            "running as root, but there is no 'postgres' OS user to run initdb and postgres "
            f"as: {INSTALL_HINT}"
        ) from None
    return entry.pw_uid, entry.pw_gid
