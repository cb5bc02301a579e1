"""Opening a handle on a server that takes the connection and never answers it (SIGSTOP) fails
at the operation timeout as an unreachable server, with the same error class and words on
every backend (docs/contract.md, section 6), and the next open after it thaws works."""

from __future__ import annotations

import time

import pytest
from frozen_servers import ALL, Target

import lockyard
from lockyard.testing.fixtures import unique_prefix

TIMEOUT_S = 1.0


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_opening_a_handle_on_a_stopped_server_fails_as_unreachable(target: Target) -> None:
    url = f"{target.url(unique_prefix(), None)}&timeout={TIMEOUT_S:g}"
    target.server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(lockyard.BackendConnectionError) as info:
            await lockyard.connect(url)
        took = time.monotonic() - started
    finally:
        target.server.thaw()
    print(f"\nopening on a stopped server: {type(info.value).__name__} after {took:.2f} s")
    assert "no answer within 1s while connecting" in str(info.value)
    assert "the server is down, starting up or overloaded" in str(info.value)
    assert not isinstance(info.value, lockyard.OperationTimeoutError)
    # At the operation timeout: not sooner, and not after a longer setup timeout. The bound
    # above it is loose for a loaded machine; the setup timeouts it must not reach are 60 s.
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 10
    async with lockyard.connect(url) as ly:
        assert await ly.store.get("ns:acme:state:none") is None
