"""A moto DynamoDB server in its own process on a free loopback port (tests, bench, demo).

``MotoServer`` runs this module as a child process (``python -m lockyard_dev.servers.moto``),
so a test can stop, kill, freeze (SIGSTOP) and restart it on the same port like a real server.
moto keeps its data in memory: a restart loses every table. ``close()`` (or leaving ``with``)
stops it and deletes its folder, unless the caller gave the folder.

The child serves moto's own WSGI application with one difference: requests are handled one at a
time. moto answers on threads and evaluates a condition and applies the write without a lock, so
two racing conditional writes could both succeed there; DynamoDB serialises the writes to one
item, and the conformance suite's race tests depend on that. (Werkzeug, under moto, also closes
the HTTP connection after every response; DynamoDB keeps them alive.)

Credentials are dummies passed explicitly in the URL (``dynamodb://KEY:SECRET@TABLE``), so no
test touches the process environment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lockyard_dev.servers.process import (
    OneProcessControls,
    ServerHarness,
    ServerProcess,
    free_port,
    port_open,
)

DUMMY_KEY_ID = "lockyard-test"
DUMMY_SECRET = "lockyard-test-secret"
DEFAULT_REGION = "us-east-1"


#: The operation timeout of the conformance suites' handles. The suites check semantics, not
#: this timeout (tests/dynamodb/test_dynamodb_outage.py does): 32 contending waiters polling one
#: moto that two CPU hogs slow down queue their requests behind each other past the 5 s default.
SUITE_OPERATION_TIMEOUT_S = 60


class MotoServer(OneProcessControls, ServerHarness):
    """One moto server process; ``stop``/``kill``/``freeze``/``start`` keep the same port."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self._owns_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="lockyard-moto-"))
        self.workdir = workdir
        self.port = port or free_port()
        argv = [sys.executable, "-m", __name__, "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = ServerProcess("moto", argv, workdir / "moto.log")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(
        self,
        table: str,
        prefix: str = "lockyard",
        *,
        create_table: bool = True,
        region: str = DEFAULT_REGION,
        **params: str,
    ) -> str:
        """A ``dynamodb://`` URL for ``table`` on this server, with dummy credentials."""
        query = {"region": region, "endpoint_url": self.endpoint_url, "prefix": prefix, **params}
        if create_table:
            query["create_table"] = "true"
        return f"dynamodb://{DUMMY_KEY_ID}:{DUMMY_SECRET}@{table}?{urlencode(query)}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until DynamoDB answers (moto imports a service on its first request,
        which can take a second: better here than inside a test's operation timeout)."""
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port) and self._dynamodb_answers(), timeout)

    def _dynamodb_answers(self) -> bool:
        scope = f"{DUMMY_KEY_ID}/20240101/{DEFAULT_REGION}/dynamodb/aws4_request"
        request = urllib.request.Request(
            self.endpoint_url + "/",
            data=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                # moto reads the region from the credential scope and checks no signature.
                "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
                "Signature=0",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def close(self) -> None:
        """Stop the server (a frozen one too); delete the folder if we made it."""
        try:
            self.stop()
        finally:
            if self._owns_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialised(app: WSGIApp) -> WSGIApp:
    """``app`` handling one request at a time, its response body read inside the lock."""
    lock = threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        with lock:
            body = app(environ, start_response)
            try:
                chunks = list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        return iter(chunks)

    return handle


def serve(host: str, port: int) -> None:
    """Run moto's server application, serialised (see the module docstring)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, serialised(app), threaded=True, request_handler=MotoRequestHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A serialised moto server for lockyard tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
