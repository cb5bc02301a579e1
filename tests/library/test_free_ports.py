"""The suite's port picker: below the ephemeral range, one slice per pytest-xdist worker, never
the same port twice in a row, and never one that is taken (CI once lost an operator to
EADDRINUSE when two workers were handed the same kernel-picked port)."""

from __future__ import annotations

import socket

import pytest

from lockyard_dev.servers import process
from lockyard_dev.servers.process import PORT_SLICE_BASE, PORT_SLICE_SIZE, free_port


def _slice_of(port: int) -> int:
    return (port - PORT_SLICE_BASE) // PORT_SLICE_SIZE


@pytest.mark.parametrize(("worker", "expected"), [("", 0), ("gw0", 1), ("gw3", 4), ("gw7", 8)])
def test_each_worker_draws_from_its_own_slice_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, worker: str, expected: int
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    ports = [free_port() for _ in range(20)]
    assert {_slice_of(port) for port in ports} == {expected}
    assert max(ports) < 32768
    assert len(set(ports)) == len(ports)


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    first = PORT_SLICE_BASE + 2 * PORT_SLICE_SIZE
    monkeypatch.setattr(process, "_port_cursor", 100)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", first + 101))
        taken.listen()
        port = free_port()
    # The next port after the taken one, or a later one if the real worker gw1 of this run
    # holds that too (its servers draw from this slice).
    assert first + 101 < port < first + PORT_SLICE_SIZE
