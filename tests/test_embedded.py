"""The embedded servers start, answer, never outlive their owner, and run as root too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil
import pytest

from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis
from agentmem.devservers.servers import find_postgres_bin
from agentmem.memory.errors import InvalidValueError

_OWNER = """
import sys, time
from pathlib import Path
from agentmem.devservers import local_servers
with local_servers(data_dir=Path(sys.argv[1])) as urls:  # SIGKILLed: the test removes it
    print(urls.redis_url, urls.database_url, flush=True)
    time.sleep(600)
"""


def _server_pids(port: int | None) -> list[int]:
    return [
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    ]


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [
            p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
        ]
        time.sleep(0.05)
    return alive


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A data folder the unprivileged PostgreSQL user can reach, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="agentmem-owner-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_servers_die_when_their_owner_is_killed(server_dir: Path) -> None:
    """SIGKILL of the owning process takes its Redis and PostgreSQL down with it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(server_dir)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert owner.stdout is not None
    redis_url, db_url = owner.stdout.readline().decode().split()
    ports = [urlsplit(redis_url).port, urlsplit(db_url).port]
    pids = [pid for port in ports for pid in _server_pids(port)]
    assert len(pids) == 2, f"expected a Redis and a PostgreSQL listener, found {pids}"

    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()

    assert _wait_gone(pids) == []


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture
def private_dir(tmp_path: Path) -> Path:
    """A 0700 directory holding a copy of the PostgreSQL wheel (as a checkout's venv would)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    package = find_postgres_bin().parent.parent
    for part in (package, package.parent / f"{package.name}.libs"):
        if part.is_dir():
            shutil.copytree(part, private / part.name, symlinks=True, copy_function=_link_or_copy)
    return private


async def _roundtrip(server: EmbeddedPostgres, write: str | None) -> list[str]:
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS notes (text text)")
        if write is not None:
            await conn.execute("INSERT INTO notes VALUES ($1)", write)
        return [row["text"] for row in await conn.fetch("SELECT text FROM notes")]
    finally:
        await conn.close()


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
async def test_postgres_started_by_root_from_a_private_directory_keeps_its_data(
    private_dir: Path,
) -> None:
    """As root under a 0700 directory, PostgreSQL runs as nobody and restarts with its rows."""
    data_dir = private_dir / "checkout" / ".agentmem" / "servers" / "postgres"
    bin_dir = private_dir / find_postgres_bin().relative_to(find_postgres_bin().parents[2])
    server = EmbeddedPostgres(data_dir, bin_dir=bin_dir)
    try:
        with server:
            assert private_dir not in server.pgdata.parents
            assert await _roundtrip(server, "kept") == ["kept"]
        again = EmbeddedPostgres(data_dir, bin_dir=bin_dir)  # `agentmem inspect` after the demo
        with again:
            assert again.pgdata == server.pgdata
            assert await _roundtrip(again, None) == ["kept"]
        shutil.rmtree(data_dir)  # `make clean`: the next start begins a fresh cluster
        with EmbeddedPostgres(data_dir, bin_dir=bin_dir) as fresh:
            assert await _roundtrip(fresh, None) == []
    finally:
        server.destroy()


def test_redis_fsyncs_its_append_only_file_as_configured(tmp_path: Path) -> None:
    """``appendfsync`` reaches the server; a policy other than everysec or always is refused."""
    with (
        EmbeddedRedis(tmp_path / "redis", appendfsync="always") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"CONFIG GET appendfsync\r\n")
        assert b"always" in sock.recv(256)
    with pytest.raises(InvalidValueError, match="appendfsync"):
        EmbeddedRedis(tmp_path / "redis", appendfsync="no")
