"""The test node's container images, built with no registry and no Docker engine.

- ``pause``: the sandbox process (``pause.c``, ``gcc -static``) alone in a one-layer image.
- ``python:3.11-slim`` stand-in: a Debian bookworm ``mmdebstrap`` minbase with Python 3.11;
  only the build uses it (it answers ``deploy/Dockerfile``'s ``FROM``).
- the operator: ``buildah bud`` of ``deploy/Dockerfile`` with ``--network none``; pip installs
  from wheels built on the host (same Debian 12, same CPython 3.11 ABI) through
  ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` build arguments and a read-only volume.
- the sample workload: ``deploy/samples/workload/Dockerfile`` on top of the operator image.

Each is a docker-archive in ``<cache>/node/images/`` whose name carries a hash of its inputs, so
a changed source tree rebuilds the images that contain it and nothing else is rebuilt. The
build leaves no mount, process or folder behind (buildah's storage lives in a temporary folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lockyard_dev.node.host import HostPaths, unmount_below
from lockyard_dev.node.progress import Say, quiet

PAUSE_REF = "registry.k8s.io/pause:3.10.1"
# The name deploy/Dockerfile's FROM resolves to; the stand-in is Debian's Python 3.11.
BASE_REF = "docker.io/library/python:3.11-slim"
OPERATOR_REF = "localhost/lockyard-operator:dev"
WORKLOAD_REF = "localhost/lockyard-workload:dev"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Used when the host's apt sources name no Debian mirror.
DEFAULT_MIRRORS = ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")

# What of the checkout goes into the operator image (deploy/Dockerfile COPYs exactly these).
IMAGE_SOURCES = ("pyproject.toml", "README.md", "library", "operator")
WORKLOAD_DIR = Path("deploy/samples/workload")
# Requirements the image's Python (Debian's 3.11.2) has and a newer host Python skips by marker:
# redis needs async-timeout below 3.11.3.
IMAGE_ONLY_WHEELS = ("async-timeout>=4.0.3",)
_SKIPPED = ("__pycache__", ".egg-info", ".pyc", ".mypy_cache", ".ruff_cache")


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the step and carries its output."""


@dataclass(frozen=True)
class NodeImages:
    """Docker-archive paths of the images a node imports (``ctr images import``)."""

    pause: Path
    operator: Path
    workload: Path
    #: operator and workload in one archive: their shared layers are read and unpacked once.
    bundle: Path

    def archives(self) -> tuple[Path, ...]:
        return (self.pause, self.bundle)


def images_dir(cache: Path) -> Path:
    return cache / "node" / "images"


def build_images(source: Path, cache: Path, say: Say = quiet) -> NodeImages:
    """Every image the node needs, from the cache when its inputs did not change."""
    folder = images_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    # One build at a time (a test session and `make node-up`, say); under the lock, a buildah
    # folder left by a build that was killed is nobody's and goes.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in folder.glob("lockyard-*-*"):
            if stale.is_dir():
                unmount_below(stale)
                shutil.rmtree(stale, ignore_errors=True)
        for partial in folder.glob("*.partial"):
            partial.unlink(missing_ok=True)
        return _build_all(source, cache, folder, say)


def _build_all(source: Path, cache: Path, folder: Path, say: Say) -> NodeImages:
    pause = _cached(folder, "pause", _digest([_pause_source()]), lambda out: build_pause(out))
    base = _cached(
        folder,
        "python-base",
        _digest([BASE_SUITE.encode(), *(p.encode() for p in BASE_PACKAGES), *_mirrors_bytes()]),
        lambda out: build_python_base(out, say),
        say,
        "python base (mmdebstrap, ~30-60 s)",
    )
    operator_key = _digest([base.name.encode(), *_tree_bytes(source, _operator_inputs())])
    operator = _cached(
        folder,
        "operator",
        operator_key,
        lambda out: build_operator(source, base, out, cache, say),
        say,
        "operator image (wheels + buildah, ~1-3 min)",
    )
    workload = _cached(
        folder,
        "workload",
        _digest([operator.name.encode(), *_tree_bytes(source, [WORKLOAD_DIR])]),
        lambda out: build_workload(source, operator, out, cache, say),
        say,
        "workload image (buildah, ~15 s)",
    )
    bundle = _cached(
        folder,
        "bundle",
        _digest([operator.name.encode(), workload.name.encode()]),
        lambda out: merge_archives([operator, workload], out),
    )
    _prune(folder, keep={pause, base, operator, workload, bundle})
    return NodeImages(pause=pause, operator=operator, workload=workload, bundle=bundle)


# --- caching ----------------------------------------------------------------------------------


def _cached(
    folder: Path,
    name: str,
    key: str,
    build: Callable[[Path], None],
    say: Say = quiet,
    what: str = "",
) -> Path:
    target = folder / f"{name}-{key[:16]}.tar"
    if target.is_file():
        return target
    if what:
        say(f"building the {what}")
    started = time.monotonic()
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        build(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)
    if what:
        size = target.stat().st_size / 1e6
        say(f"built the {what.split(' (')[0]} in {time.monotonic() - started:.1f}s ({size:.0f} MB)")
    return target


def _prune(folder: Path, keep: set[Path]) -> None:
    # Older builds of the same images: each is hundreds of MB.
    for archive in folder.glob("*.tar"):
        if archive not in keep:
            archive.unlink(missing_ok=True)


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _operator_inputs() -> list[Path]:
    return [Path("deploy/Dockerfile"), Path("constraints.txt"), *map(Path, IMAGE_SOURCES)]


def _tree_bytes(root: Path, entries: Sequence[Path]) -> Iterator[bytes]:
    """Relative path and content of every file under ``entries``, in a stable order."""
    for entry in entries:
        for path in sorted(_files(root / entry)):
            yield str(path.relative_to(root)).encode() + b"\0" + path.read_bytes()


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise ImageBuildError(f"{path} is missing: run from the project checkout")
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.endswith(_SKIPPED)]
        for name in files:
            if not name.endswith(_SKIPPED):
                yield Path(folder) / name


# --- docker archives --------------------------------------------------------------------------


def make_image(
    rootfs: Path,
    ref: str,
    out: Path,
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = (),
) -> None:
    """Write a one-layer docker-archive tagged ``ref`` whose layer is the tar ``rootfs``."""
    layer_hash = hashlib.sha256()
    with rootfs.open("rb") as layer:
        for chunk in iter(lambda: layer.read(1 << 20), b""):
            layer_hash.update(chunk)
    diff_id = "sha256:" + layer_hash.hexdigest()
    config: dict[str, object] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env],
        "WorkingDir": "/",
    }
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": f"lockyard_dev.node.images {rootfs.name}"}],
        }
    ).encode()
    config_name = hashlib.sha256(image_config).hexdigest() + ".json"
    layer_name = f"{diff_id[7:]}/layer.tar"
    repository, _, tag = ref.rpartition(":")
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    with tarfile.open(out, "w") as archive:
        _add_bytes(archive, config_name, image_config)
        archive.add(rootfs, arcname=layer_name)
        _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(archive, "repositories", json.dumps({repository: {tag: diff_id[7:]}}).encode())


def merge_archives(archives: Sequence[Path], out: Path) -> None:
    """One docker-archive holding every image of ``archives`` (layers stored once, by digest)."""
    manifest: list[object] = []
    seen: set[str] = set()
    with tarfile.open(out, "w") as merged:
        for path in archives:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.name == "manifest.json":
                        data = archive.extractfile(member)
                        assert data is not None
                        manifest.extend(json.load(data))
                    elif member.name != "repositories" and member.name not in seen:
                        seen.add(member.name)
                        merged.addfile(
                            member, archive.extractfile(member) if member.isfile() else None
                        )
        _add_bytes(merged, "manifest.json", json.dumps(manifest).encode())


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    archive.addfile(info, io.BytesIO(data))


# --- pause ------------------------------------------------------------------------------------


def _pause_source() -> bytes:
    return resources.files("lockyard_dev.node").joinpath("pause.c").read_bytes()


def build_pause(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lockyard-pause-") as tmp:
        folder = Path(tmp)
        (folder / "pause.c").write_bytes(_pause_source())
        _run(["gcc", "-static", "-Os", "-s", "-o", "pause", "pause.c"], "gcc (pause)", cwd=folder)
        rootfs = folder / "rootfs.tar"
        with tarfile.open(rootfs, "w") as archive:
            archive.add(folder / "pause", arcname="pause")
        make_image(rootfs, PAUSE_REF, out, entrypoint=["/pause"])


# --- python base ------------------------------------------------------------------------------


def _host_mirrors() -> tuple[str, str]:
    """The Debian and Debian security mirrors the host's deb822 apt sources name."""
    main = security = ""
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("debian-security"):
                        security = security or uri
                    elif uri.rstrip("/").endswith("debian"):
                        main = main or uri
    return main or DEFAULT_MIRRORS[0], security or DEFAULT_MIRRORS[1]


def _mirrors_bytes() -> list[bytes]:
    return [m.encode() for m in _host_mirrors()]


def build_python_base(out: Path, say: Say = quiet) -> None:
    main, security = _host_mirrors()
    with tempfile.TemporaryDirectory(prefix="lockyard-base-", dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _run(
            [
                "mmdebstrap", "--quiet", "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                BASE_SUITE, str(rootfs),
                f"deb {main} {BASE_SUITE} main",
                f"deb {security} {BASE_SUITE}-security main",
            ],
            "mmdebstrap (python base)",
        )  # fmt: skip
        make_image(rootfs, BASE_REF, out, cmd=["python3"], env=["LANG=C.UTF-8"])


# --- buildah ----------------------------------------------------------------------------------


class Buildah:
    """buildah with its storage in a private temporary folder, removed (mounts first) on exit."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        # buildah writes these whatever --root says: its blob-info cache and a CNI lock file.
        self._host = HostPaths(Path("/var/lib/containers"), Path("/etc/cni"))

    def __enter__(self) -> Buildah:
        self._host.remember()
        return self

    def __exit__(self, *exc: object) -> None:
        unmount_below(self.scratch)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self._host.remove_created()

    def __call__(self, *args: str, what: str) -> None:
        _run(
            [
                "buildah",
                "--root", str(self.scratch / "root"),
                "--runroot", str(self.scratch / "run"),
                "--storage-driver", "overlay",
                *args,
            ],
            what,
            env={**os.environ, "TMPDIR": str(self.scratch)},
        )  # fmt: skip


def _wheelhouse(source: Path, cache: Path, say: Say) -> Path:
    """Wheels of everything ``.[operator]`` installs (not lockyard itself), built on the host."""
    key = _digest(_tree_bytes(source, [Path("pyproject.toml"), Path("constraints.txt")]))
    folder = cache / "node" / f"wheelhouse-{key[:16]}"
    if (folder / ".complete").is_file():
        return folder
    for old in (cache / "node").glob("wheelhouse-*"):
        shutil.rmtree(old, ignore_errors=True)
    say("building wheels for the operator image on the host (pip wheel)")
    folder.mkdir(parents=True)
    _run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder),
            "--constraint", str(source / "constraints.txt"),
            "pip", "setuptools", "wheel", ".[operator]", *IMAGE_ONLY_WHEELS,
        ],
        "pip wheel",
        cwd=source,
    )  # fmt: skip
    # The image builds lockyard from the copied sources; a wheel of an older checkout would
    # shadow them.
    for own in folder.glob("lockyard-*.whl"):
        own.unlink()
    (folder / ".complete").touch()
    return folder


def _context(source: Path, into: Path) -> Path:
    """The build context: only what deploy/Dockerfile copies (no venv, no .git)."""
    context = into / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns(*(f"*{suffix}" for suffix in _SKIPPED))
    for entry in IMAGE_SOURCES:
        path = source / entry
        if path.is_dir():
            shutil.copytree(path, context / entry, ignore=ignore)
        else:
            shutil.copy2(path, context / entry)
    return context


def build_operator(source: Path, base: Path, out: Path, cache: Path, say: Say = quiet) -> None:
    wheels = _wheelhouse(source, cache, say)
    with tempfile.TemporaryDirectory(prefix="lockyard-buildah-", dir=out.parent) as tmp:
        scratch = Path(tmp)
        context = _context(source, scratch)
        with Buildah(scratch / "buildah") as buildah:
            buildah("pull", "--quiet", f"docker-archive:{base}", what="buildah pull (base)")
            buildah(
                "bud", "--quiet", "--pull=never", "--network=none", "--layers=false",
                f"--volume={wheels}:/wheelhouse:ro",
                "--build-arg=PIP_NO_INDEX=1", "--build-arg=PIP_FIND_LINKS=/wheelhouse",
                "--file", str(source / "deploy" / "Dockerfile"),
                "--tag", OPERATOR_REF, str(context),
                what="buildah bud deploy/Dockerfile",
            )  # fmt: skip
            buildah(
                "push", "--quiet", OPERATOR_REF, f"docker-archive:{out}:{OPERATOR_REF}",
                what="buildah push (operator)",
            )  # fmt: skip


def build_workload(source: Path, operator: Path, out: Path, cache: Path, say: Say = quiet) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="lockyard-buildah-", dir=out.parent) as tmp,
        Buildah(Path(tmp) / "buildah") as buildah,
    ):
        buildah("pull", "--quiet", f"docker-archive:{operator}", what="buildah pull (operator)")
        buildah(
            "bud", "--quiet", "--pull=never", "--network=none", "--layers=false",
            f"--build-arg=BASE={OPERATOR_REF}",
            "--tag", WORKLOAD_REF, str(source / WORKLOAD_DIR),
            what=f"buildah bud {WORKLOAD_DIR}",
        )  # fmt: skip
        buildah(
            "push", "--quiet", WORKLOAD_REF, f"docker-archive:{out}:{WORKLOAD_REF}",
            what="buildah push (workload)",
        )  # fmt: skip


def _run(
    argv: Sequence[str],
    what: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        raise ImageBuildError(
            f"{what}: {argv[0]} is not installed (run `make system-deps` as root)"
        )
    with contextlib.suppress(FileNotFoundError):
        result = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise ImageBuildError(
                f"{what} failed (exit {result.returncode}):\n" + "\n".join(output[-40:])
            )
        return
    raise ImageBuildError(f"{what}: cannot run {argv[0]}")
