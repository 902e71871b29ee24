"""The process that keeps a checkout's shared local servers.

``python -m agentmem.devservers.keeper DIR``.

Started by the first user of :func:`devservers.shared.shared_servers`, in a session of its own.
It starts Redis and PostgreSQL in ``DIR``, writes ``shared.json``, and stops them when no
user's lease is left or on SIGTERM (``agentmem servers down --force``). A start that fails
leaves its reason, one line, in ``shared.error``. See :mod:`devservers.shared` for the protocol.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from agentmem.devservers.base import Server, start_together, stop_together
from agentmem.devservers.postgres_server import EmbeddedPostgres
from agentmem.devservers.redis_server import EmbeddedRedis
from agentmem.devservers.shared import (
    ERROR,
    STATE,
    SharedState,
    locked,
    process_start,
    users,
    write_state,
)

logger = logging.getLogger("agentmem.devservers.keeper")

POLL_SECONDS = 0.2  # how often the leases are looked at


class Keeper:
    """The servers of one directory, kept while anyone uses them."""

    def __init__(self, directory: Path, appendfsync: str) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.servers: list[Server] = []
        self.stop_requested = False

    def _ask_to_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._ask_to_stop)
        signal.signal(signal.SIGINT, self._ask_to_stop)
        try:
            redis = EmbeddedRedis(self.directory / "redis", appendfsync=self.appendfsync)
            postgres = EmbeddedPostgres(self.directory / "postgres")
            self.servers = [redis, postgres]
            start_together(self.servers)
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            (self.directory / ERROR).write_text(reason + "\n")
            logger.exception("could not start the servers: %s", reason)
            return 1
        write_state(
            self.directory,
            SharedState(
                keeper_pid=os.getpid(),
                keeper_started=process_start(os.getpid()) or "",
                redis_url=redis.url,
                database_url=postgres.url,
                server_pids=[s.pid for s in self.servers if s.pid is not None],
                appendfsync=self.appendfsync,
            ),
        )
        logger.info("servers up: %s, %s", redis.url, postgres.url)
        while True:
            time.sleep(POLL_SECONDS)
            if self.stop_requested:
                break
            if not all(server.running for server in self.servers):
                logger.error("a server exited by itself; stopping the other")
                break
            if users(self.directory):
                continue
            with locked(self.directory):  # a user attaching now has written its lease first
                if not users(self.directory):
                    self._stop()
                    return 0
        with locked(self.directory):
            self._stop()
        return 0

    def _stop(self) -> None:
        """Stop the servers (the lock held: nobody attaches meanwhile, nobody starts anew)."""
        (self.directory / STATE).unlink(missing_ok=True)
        stop_together(self.servers)
        logger.info("servers stopped")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s keeper %(levelname)s %(message)s")
    directory, appendfsync = Path(argv[0]), argv[1]
    return Keeper(directory, appendfsync).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
