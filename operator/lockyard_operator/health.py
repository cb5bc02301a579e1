"""``GET /healthz`` of a replica under leader election, leader and standby alike.

kopf's own liveness endpoint exists only while kopf runs, which is only in the leader: a standby
must answer too, or its liveness probe would restart it. The answer is 200 while the process
runs (a replica that lost its term has exited), with who it is and whether it leads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web


class HealthServer:
    """``GET /healthz`` on ``host``:``port`` (all interfaces by default), until ``stop``."""

    def __init__(
        self, status: Callable[[], dict[str, Any]], port: int, host: str = "0.0.0.0"
    ) -> None:
        self._status = status
        self._port = port
        self._host = host
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._serve)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._runner = runner

    async def _serve(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
