"""containerd's root kept between runs, so a node imports its images only when they change.

Importing the operator and workload images (one 460 MB archive) takes 20-55 s on two loaded
cores, longer than the rest of a node's start. The store is one containerd root under the
cache, used by one node at a time (an exclusive ``flock``); a second node running at the same
time gets ``None`` from `ImageStore.acquire` and imports into its own run folder instead.
Containers never outlive a run (`Node.stop` deletes them), so the store holds only images.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

_RECORD = "imported-archives"


class ImageStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock_fd: int | None = None

    @property
    def root(self) -> Path | None:
        """containerd's root while this object holds the store, else None."""
        return self.folder / "root" if self._lock_fd is not None else None

    def acquire(self) -> Path | None:
        """The root to give containerd, or None when another node holds the store."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        self._lock_fd = fd
        return self.folder / "root"

    def lock_fds(self) -> tuple[int, ...]:
        """The lock's file descriptor, for containerd to inherit (the lock is then held until
        both it and this process are gone: a harness killed outright cannot hand a store in use
        to the next node)."""
        return (self._lock_fd,) if self._lock_fd is not None else ()

    def holds(self, archives: Sequence[Path]) -> bool:
        """Whether the store already has exactly these archives imported (names carry hashes)."""
        if self._lock_fd is None or not (self.folder / "root").is_dir():
            return False
        try:
            recorded = (self.folder / _RECORD).read_text().split()
        except FileNotFoundError:
            return False
        return recorded == [a.name for a in archives]

    def record(self, archives: Sequence[Path]) -> None:
        if self._lock_fd is not None:
            (self.folder / _RECORD).write_text("\n".join(a.name for a in archives) + "\n")

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
