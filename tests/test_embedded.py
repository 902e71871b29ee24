"""The embedded servers start, answer, and never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

_OWNER = """
import os, sys, time
from devservers import local_servers
with local_servers() as urls:
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


def test_servers_die_when_their_owner_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the owning process takes its Redis and PostgreSQL down with it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER],
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
