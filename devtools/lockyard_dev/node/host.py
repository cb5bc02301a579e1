"""What the node leaves on the host outside its run folder, and how it is taken away again.

The kubelet bind-mounts its root dir and every pod volume, containerd mounts overlay snapshots
and shims, and some paths are hardcoded whatever the configuration says: the kubelet's
``/var/lib/kubelet/device-plugins`` and ``/var/log/containers``, the shims' ``/run/containerd``,
buildah's ``/var/lib/containers/cache``. Each kubelet's cgroups live under a root of its own
(``make_cgroup_root``), removed with everything in it. Only what did not
exist before the node started is removed, so a host that had its own kubelet keeps its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

# Paths the kubelet and containerd 1.6 write whatever their configuration says.
HARDCODED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/run/containerd"),
    Path("/etc/cni"),
    Path("/opt/cni"),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The kubelet's device-plugin registration socket: this path whatever ``--root-dir`` says.
DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
#: Held by a harness while one of its kubelets empties that folder and listens there.
KUBELET_START_LOCK = Path("/run/lock/lockyard-kubelet-start.lock")


def mounts_below(folder: Path) -> list[str]:
    """Mount points at or under ``folder`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(folder.resolve())
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            # Field 5 is the mount point, with spaces etc. octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_below(folder: Path) -> int:
    """Lazily unmount everything under ``folder``; the number of mounts it found."""
    points = mounts_below(folder)
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return len(points)


class HostPaths:
    """Remember which of ``paths`` exist; later remove those that did not (and now do)."""

    def __init__(self, *paths: Path) -> None:
        self._paths = paths
        self._existed: set[Path] = set()

    def remember(self, record: Path | None = None) -> None:
        """Note which paths exist now; ``record`` keeps the note for `from_record`."""
        self._existed = {p for p in self._paths if p.exists()}
        if record is not None:
            record.write_text("\n".join(str(p) for p in self._paths if p not in self._existed))

    @classmethod
    def from_record(cls, record: Path) -> HostPaths:
        """The paths a dead harness noted as absent before it ran (to remove them now)."""
        try:
            created = [Path(line) for line in record.read_text().splitlines() if line]
        except FileNotFoundError:
            created = []
        return cls(*created)

    def remove_created(self) -> list[Path]:
        removed = []
        for path in self._paths:
            if path in self._existed or not path.exists():
                continue
            unmount_below(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed


def cgroup_dirs(name: str) -> list[Path]:
    """``name`` under every mounted cgroup hierarchy that has it; with ``name`` empty, every
    top-level cgroup of every hierarchy."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if name:
                if (hierarchy / name).is_dir():
                    found.append(hierarchy / name)
            elif (hierarchy / "cgroup.procs").is_file():
                found += sorted(p for p in hierarchy.iterdir() if p.is_dir())
    return found


def make_cgroup_root(name: str) -> list[Path]:
    """``name`` in every cgroup v1 hierarchy (the kubelet requires its cgroupRoot to exist);
    the folders it created. A cpuset child starts with no CPUs and memory nodes: copy them."""
    made = []
    with contextlib.suppress(OSError):
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if not (hierarchy / "cgroup.procs").is_file():
                continue
            folder = hierarchy / name
            if not folder.is_dir():
                folder.mkdir()
                made.append(folder)
            for setting in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / setting).is_file():
                    (folder / setting).write_text((hierarchy / setting).read_text())
    return made


def remove_cgroups(roots: Iterable[Path]) -> list[Path]:
    """rmdir each cgroup tree bottom-up; the ones that stayed (a process still in them)."""
    stuck = []
    for root in roots:
        for folder, dirs, _files in os.walk(root, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(folder, name))
        try:
            os.rmdir(root)
        except FileNotFoundError:
            pass
        except OSError:
            stuck.append(root)
    return stuck


def _socket_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_ctime_ns


@contextlib.contextmanager
def one_kubelet_starting() -> Iterator[Callable[[], bool]]:
    """Start one kubelet at a time on this host; yields "has a kubelet listened since?".

    A starting kubelet empties ``/var/lib/kubelet/device-plugins`` and then listens on
    ``kubelet.sock`` there, and a kubelet that cannot listen exits ("Failed to start
    ContainerManager ... bind: address already in use"). Two starting together (the two nodes
    of one harness, a few ms apart, or nodes of parallel test workers) can both empty the
    folder before either listens: seen beside two CPU hogs. Inside this turn the caller starts
    its kubelet and waits until the socket is a new one; the next kubelet then replaces it,
    which leaves the first listening on an unlinked socket: nothing here uses device plugins.
    The lock is an flock, so a harness killed outright releases it with its process."""
    KUBELET_START_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with KUBELET_START_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = _socket_identity(DEVICE_PLUGIN_SOCKET)

        def listened() -> bool:
            now = _socket_identity(DEVICE_PLUGIN_SOCKET)
            return now is not None and now != before

        yield listened
