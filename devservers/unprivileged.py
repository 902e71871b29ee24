"""Where an unprivileged server user can reach PostgreSQL's binaries and its cluster.

PostgreSQL refuses to run as root, so when we are root it runs as ``nobody``. That user must
be able to traverse every directory above the binaries and above the cluster, which is not
the case in a checkout under a private directory (``/root/agentmem`` under a 0700 ``/root``).
Then the binaries are copied once into a root-owned, world-traversable cache (keyed by the
content of the ``postgres`` binary, written atomically), and the cluster lives in a directory
of that cache keyed by the data directory's absolute path, so every later start from the same
data directory (``agentmem inspect`` after ``make demo``) finds the same cluster. A marker
shared by the data directory and the cluster ties the two: when the data directory is wiped
(``make clean``), its next start begins a fresh cluster instead of resurrecting the old one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from agentmem.devservers.errors import ServerStartError

_MARKER = "cluster-id"


def cache_root() -> Path:
    """``/var/tmp/agentmem-<uid>``: only this user may write it, everyone may traverse it."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    root = base / f"agentmem-{os.geteuid()}"
    root.mkdir(mode=0o755, exist_ok=True)  # 0755 or narrower (umask); widened below
    info = root.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        msg = (
            f"{root} must be a directory owned by uid {os.geteuid()} and writable by no one "
            "else; remove it and try again"
        )
        raise ServerStartError(msg)
    root.chmod(0o755)
    return root


def traversable_by_others(directory: Path) -> bool:
    """True if any user can reach entries of ``directory``: it and every parent are o+x."""
    resolved = directory.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in (resolved, *resolved.parents))


def _tree_readable_by_others(top: Path) -> bool:
    if not traversable_by_others(top):
        return False
    for folder, dirs, files in os.walk(top):
        for name in dirs:
            if (Path(folder) / name).stat().st_mode & 0o005 != 0o005:
                return False
        for name in files:
            if (Path(folder) / name).lstat().st_mode & stat.S_IROTH == 0:
                return False
    return True


def _install_parts(bin_dir: Path) -> tuple[Path, list[Path]]:
    """The folder the install lives in, and what to copy from it: ``<package>/pginstall`` and
    the wheel's ``<package>.libs`` (the binaries find their libraries at
    ``$ORIGIN/../../../<package>.libs``)."""
    install = bin_dir.parent
    package = install.parent
    site = package.parent
    libs = site / f"{package.name}.libs"
    return site, [install, *([libs] if libs.is_dir() else [])]


def reachable_binaries(bin_dir: Path) -> Path:
    """``bin_dir`` if any user can run it, else the same install copied into the cache."""
    site, parts = _install_parts(bin_dir)
    if all(_tree_readable_by_others(part) for part in parts):
        return bin_dir.resolve()  # the path others can follow, not a link inside a private one
    digest = hashlib.sha256((bin_dir / "postgres").read_bytes()).hexdigest()[:16]
    root = cache_root()
    target = root / f"pginstall-{digest}"
    relative_bin = bin_dir.relative_to(site)
    if (target / relative_bin / "postgres").exists():
        return target / relative_bin
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=root))
    try:
        copy = staging / "copy"
        for part in parts:
            shutil.copytree(part, copy / part.relative_to(site), symlinks=True)
        _open_up(copy)
        try:
            copy.rename(target)  # atomic: a reader sees the whole tree or none of it
        except OSError:
            if not (target / relative_bin / "postgres").exists():  # not a lost race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / relative_bin


def _open_up(top: Path) -> None:
    """Directories 0755, files readable by all (executables stay executable)."""
    top.chmod(0o755)
    for folder, dirs, files in os.walk(top):
        for name in dirs:
            (Path(folder) / name).chmod(0o755)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def cluster_home(data_dir: Path) -> Path:
    """The cache directory that holds the cluster of ``data_dir``: the same one on every start.

    A cluster whose marker does not match ``data_dir``'s (the data directory was deleted and
    made again) is removed first.
    """
    absolute = str(data_dir.resolve())
    key = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    clusters = cache_root() / "clusters"
    clusters.mkdir(exist_ok=True)
    clusters.chmod(0o755)  # whatever the umask: the server's user must traverse it
    home = clusters / key
    here, there = data_dir / _MARKER, home / _MARKER
    if here.exists() and there.exists() and here.read_text() == there.read_text():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    home.chmod(0o755)
    token = f"{secrets.token_hex(8)} {absolute}\n"
    there.write_text(token)
    here.write_text(token)
    return home


def cluster_home_if_any(data_dir: Path) -> Path | None:
    """The cache directory of ``data_dir``'s cluster if it has one (see :func:`cluster_home`)."""
    if not (data_dir / _MARKER).exists():
        return None
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "clusters" / key
