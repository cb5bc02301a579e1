"""Servers left running by a run that died: recorded when they start, reaped by the next run.

A harness stops its servers when its run ends (``ServerHarness.close``), but a run killed with
SIGKILL (a CI timeout, the OOM killer, a second Ctrl-C) runs no clean-up, and its redis-server,
postgres, moto or kube-apiserver keeps its port, its CPU and its folder in /tmp until the machine
reboots. So every server process is recorded when it starts (:func:`track`: one small file naming
the server and the process that started it, each by pid and start time, so that a reused pid is
never taken for either) and forgotten when it is stopped (:func:`forget`). Before the first
server a process starts, :func:`reap_once` ends the servers whose starter is gone: SIGKILL to the
server and every process under it (PostgreSQL's backends each call ``setsid()``, so a process
group would miss them), the harness's temporary folder deleted, and one line on stderr for each.
Servers of a starter that still runs (another pytest-xdist worker, a bench next to the tests)
are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

#: One JSON file per server process, named by its pid.
REGISTRY = Path(tempfile.gettempdir()) / "lockyard-servers"
#: The folders harnesses create with ``mkdtemp`` (directly in the temporary directory): the only
#: folders a reap deletes. A server whose log lies elsewhere (a folder the caller chose, a CI
#: checkout) loses its process, never its folder.
HARNESS_FOLDERS = (
    "lockyard-pg-",
    "lockyard-redis-",
    "lockyard-sentinel-",
    "lockyard-cluster-",
    "lockyard-moto-",
    "lockyard-k8s-",
)

_reaped = False
_reap_lock = threading.Lock()


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces or parentheses; split after it.
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if there is none."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":  # a zombie has exited; only its parent's wait is due
        return None
    return int(fields[19])


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, by parent pid (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


def track(name: str, pid: int, log_folder: Path | None) -> None:
    """Record server ``name`` (process ``pid``, logging in ``log_folder``) as started by us."""
    server_start, own_start = start_time(pid), start_time(os.getpid())
    if server_start is None or own_start is None:
        return  # it exited already, or no /proc: nothing to reap later either
    record = {
        "name": name,
        "pid": pid,
        "start": server_start,
        "owner": os.getpid(),
        "owner_start": own_start,
        "folder": None if log_folder is None else str(log_folder),
    }
    REGISTRY.mkdir(exist_ok=True)
    path = REGISTRY / str(pid)
    part = path.with_suffix(".part")
    part.write_text(json.dumps(record))
    part.replace(path)  # whole or absent: a reap never reads half a record


def forget(pid: int) -> None:
    """``pid`` was stopped by its harness: nothing to reap."""
    with contextlib.suppress(FileNotFoundError):
        (REGISTRY / str(pid)).unlink()


def reap_once() -> None:
    """:func:`reap`, the first time a process calls it (each server start calls it)."""
    global _reaped
    with _reap_lock:
        if _reaped:
            return
        _reaped = True
    reap()


def reap(say: Callable[[str], None] | None = None) -> list[str]:
    """End the recorded servers whose starter is gone; returns (and says) what was reaped."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    reaped: list[str] = []
    if not REGISTRY.is_dir():
        return reaped
    for path in REGISTRY.iterdir():
        if path.suffix == ".part" or not path.name.isdigit():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed meanwhile by its harness, or by another reaper
        if _alive(record["owner"], record["owner_start"]):
            continue
        if _alive(record["pid"], record["start"]):
            _kill_tree(record["pid"])
            line = (
                f"lockyard_dev: reaped {record['name']} (pid {record['pid']}), left running by "
                f"pid {record['owner']}, which exited without stopping it"
            )
            reaped.append(line)
            say(line)
        folder = _harness_folder(record["folder"])
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        forget(int(path.name))
    return reaped


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it (found before any is signalled)."""
    children = children_by_parent()
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, ()))
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _harness_folder(log_folder: str | None) -> Path | None:
    """The harness's own temporary folder holding ``log_folder``, if it is one."""
    if log_folder is None:
        return None
    root = Path(tempfile.gettempdir())
    for folder in (Path(log_folder), *Path(log_folder).parents):
        if folder.parent == root:
            return folder if folder.name.startswith(HARNESS_FOLDERS) else None
    return None
