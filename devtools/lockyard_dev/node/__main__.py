"""``python -m lockyard_dev.node``: build the node's images, or run a node for your own use.

    python -m lockyard_dev.node images            # build/cache the images (progress lines)
    python -m lockyard_dev.node up [--state-dir DIR] [--nodes N]
    python -m lockyard_dev.node down [--state-dir DIR]
    python -m lockyard_dev.node reap RUN_DIR      # clean up after a harness that was killed

``up`` starts a supervisor in the background (its own session) that owns the node, waits until
the node is Ready and prints ``export KUBECONFIG=...``; ``down`` asks it to stop (SIGTERM: the
ordered teardown of `Node.stop`) and waits for it. ``--nodes`` (default 2: 127.0.0.1 and
127.0.0.2, one per operator replica) says how many nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lockyard_dev.cluster.controlplane import cache_dir
from lockyard_dev.node.images import build_images
from lockyard_dev.node.node import Node, NodeError, reap_leftovers
from lockyard_dev.node.progress import progress
from lockyard_dev.repository import repository_root

_STATE = "state.json"
_MARKER = "lockyard_dev.node"
_UP_TIMEOUT = 900.0  # a cold image build included
_DOWN_TIMEOUT = 180.0


def _alive(pid: int) -> bool:
    try:
        return _MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _read_state(state_dir: Path) -> dict[str, object]:
    try:
        state: dict[str, object] = json.loads((state_dir / _STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state


def _serve(state_dir: Path, nodes: int) -> int:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    state_dir.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"supervisor": os.getpid()}
    (state_dir / _STATE).write_text(json.dumps(state))
    node = Node(state_dir / "run", nodes=nodes, say=progress())
    try:
        node.start()
        state.update(kubeconfig=str(node.kubeconfig), server=node.server, ready=True)
        state.update(timings=node.timings, pids=node.pids())
        (state_dir / _STATE).write_text(json.dumps(state, indent=1))
        print(f"export KUBECONFIG={node.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            for daemon in node.daemons():
                why = daemon.exited()
                if why:
                    print(f"stopping: {why}", file=sys.stderr)
                    return 1
        return 0
    except NodeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        node.stop()
        (state_dir / _STATE).unlink(missing_ok=True)


def _up(state_dir: Path, nodes: int) -> int:
    state = _read_state(state_dir)
    pid = state.get("supervisor")
    if isinstance(pid, int) and _alive(pid):
        if state.get("ready"):
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        print(f"a node is starting in {state_dir}; try again shortly", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "supervisor.log"
    child = os.posix_spawn(
        sys.executable,
        [sys.executable, "-m", _MARKER, "serve", "--state-dir", str(state_dir), f"--nodes={nodes}"],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    print(f"starting a node (log: {log}) ...", file=sys.stderr)
    deadline = time.monotonic() + _UP_TIMEOUT
    while time.monotonic() < deadline:
        exited, status = os.waitpid(child, os.WNOHANG)
        if exited:
            print(f"the node failed to start:\n{log.read_text()[-4000:]}", file=sys.stderr)
            return os.waitstatus_to_exitcode(status) or 1
        state = _read_state(state_dir)
        if state.get("ready"):
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        time.sleep(0.5)
    os.kill(child, signal.SIGTERM)
    print(f"the node did not become ready; see {log}", file=sys.stderr)
    return 1


def _down(state_dir: Path) -> int:
    state = _read_state(state_dir)
    pid = state.get("supervisor")
    if not isinstance(pid, int) or not _alive(pid):
        print(f"no node running from {state_dir}", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _DOWN_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"the node supervisor {pid} did not stop; see its log", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("node stopped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {_MARKER}", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("images", help="build or reuse the node's images")
    reap = commands.add_parser("reap", help="stop what a killed harness left running in RUN_DIR")
    reap.add_argument("run_dir", type=Path)
    for name in ("up", "down", "serve"):
        command = commands.add_parser(name)
        command.add_argument("--state-dir", type=Path, default=cache_dir() / "node" / "state")
        if name != "down":
            command.add_argument("--nodes", type=int, default=2, help="nodes to run (2)")
    args = parser.parse_args(argv)
    try:
        if args.command == "images":
            images = build_images(repository_root(), cache_dir(), progress())
            for archive in images.archives():
                print(archive)
            return 0
        if args.command == "reap":
            stopped = reap_leftovers(args.run_dir)
            print(f"stopped {len(stopped)} processes left in {args.run_dir}", file=sys.stderr)
            return 0
        state_dir = args.state_dir.expanduser().absolute()
        if args.command == "up":
            return _up(state_dir, args.nodes)
        if args.command == "down":
            return _down(state_dir)
        return _serve(state_dir, args.nodes)
    except NodeError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
