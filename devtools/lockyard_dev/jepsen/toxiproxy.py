"""toxiproxy: the server process and a client for its REST API (``docs`` at the project's README).

A :class:`ToxiproxyServer` runs ``toxiproxy-server`` on a free loopback port; :class:`Toxiproxy`
creates proxies (each on a port of ours, so re-enabling one keeps its address) and adds and
removes *toxics* on them: ``latency`` (``latency``, ``jitter`` ms), ``bandwidth`` (``rate``
KB/s), ``timeout`` (stop all data; close after ``timeout`` ms, never when 0), ``reset_peer``
(RST after ``timeout`` ms), ``slicer`` (``average_size``, ``size_variation`` bytes, ``delay``
us), ``limit_data`` (close after ``bytes``). ``stream`` is ``downstream`` (server to client) or
``upstream``. The client is synchronous: the run's controller drives faults from one thread
while the workload runs in other processes.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockyard_dev.jepsen.tools import toxiproxy_server
from lockyard_dev.servers.process import ServerHarness, ServerProcess, free_port, port_open

HOST = "127.0.0.1"


class ToxiproxyError(RuntimeError):
    """The API refused a request; the message has its status and body."""


@dataclass(frozen=True)
class Proxy:
    name: str
    listen_port: int
    upstream: str


class Toxiproxy:
    """The REST API at ``http://127.0.0.1:<port>``."""

    def __init__(self, api_port: int, timeout: float = 10.0) -> None:
        self.base = f"http://{HOST}:{api_port}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ToxiproxyError(f"{method} {path}: {exc.code} {detail}") from exc
        return json.loads(raw) if raw else None

    def version(self) -> str:
        request = urllib.request.Request(self.base + "/version")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            text: str = response.read().decode().strip()
            return text

    def create_proxy(self, name: str, upstream_port: int, listen_port: int | None = None) -> Proxy:
        port = listen_port or free_port()
        body = {"name": name, "listen": f"{HOST}:{port}", "upstream": f"{HOST}:{upstream_port}"}
        self._call("POST", "/proxies", body)
        return Proxy(name, port, body["upstream"])

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabled: every connection is closed and new ones are refused."""
        self._call("PATCH", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(
        self,
        proxy: str,
        name: str,
        kind: str,
        attributes: dict[str, int | float],
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        body = {
            "name": name,
            "type": kind,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        self._call("POST", f"/proxies/{proxy}/toxics", body)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", f"/proxies/{proxy}/toxics")
        return found

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")


class ToxiproxyServer(ServerHarness):
    """``toxiproxy-server`` on a free loopback port, logging warnings only."""

    def __init__(self, folder: Path, *, seed: int = 1) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        binary = toxiproxy_server()
        argv = [str(binary), "-host", HOST, "-port", str(self.api_port), "-seed", str(seed)]
        env = dict(os.environ, LOG_LEVEL="warn")
        self.process = ServerProcess("toxiproxy", argv, folder / "toxiproxy.log", env=env)
        self.api = Toxiproxy(self.api_port)

    def start(self, timeout: float = 30.0) -> ToxiproxyServer:
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.api_port), timeout)
        return self

    def close(self) -> None:
        self.process.stop()
