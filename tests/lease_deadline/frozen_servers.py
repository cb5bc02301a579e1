"""How the lease-deadline tests freeze a server (SIGSTOP) and thaw it again."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Protocol

from lockyard_dev.servers.redis import RedisServer


class Frozen(Protocol):
    def freeze(self) -> None: ...

    def thaw(self) -> None: ...


@dataclass
class RedisProcessFreezer:
    """SIGSTOP/SIGCONT one redis-server (the harness has no freeze of its own)."""

    server: RedisServer

    def _signal(self, sig: int) -> None:
        process = self.server.process.process
        assert process is not None
        assert process.poll() is None
        os.kill(process.pid, sig)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)
