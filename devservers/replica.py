"""A local PostgreSQL primary and a streaming read replica, from the embedded binaries.

For tests and for trying ``DATABASE_READ_URL`` (``python -m agentmem.devservers.replica``). The
primary is an :class:`~devservers.servers.EmbeddedPostgres`; the replica is a base backup of it
taken with ``pg_basebackup -R`` (which writes ``standby.signal`` and the ``primary_conninfo`` to
follow), started as a hot standby: it replays the primary's WAL as it streams in and answers
read-only queries. ``initdb -A trust`` already lets loopback connections replicate, and the
default ``wal_level=replica`` / ``max_wal_senders`` are enough for one standby.

Replication is asynchronous: a commit acknowledged by the primary reaches the replica a moment
later, which is why only reads that tolerate lag go there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.servers import EmbeddedPostgres

logger = logging.getLogger(__name__)


class EmbeddedStandby(EmbeddedPostgres):
    """A hot standby of ``primary``: made by ``pg_basebackup -R`` on its first start."""

    name = "postgres-replica"

    def __init__(self, data_dir: Path, primary: EmbeddedPostgres, port: int | None = None) -> None:
        super().__init__(data_dir, port, primary.bin_dir)
        self.primary = primary

    def _prepare(self) -> None:
        run_as = self._run_as()
        self._place(run_as)
        if (self.pgdata / "PG_VERSION").exists():
            return  # a standby made earlier: it resumes streaming where it stopped
        if not self.primary.running:
            msg = f"the primary on port {self.primary.port} must run to copy it to a replica"
            raise ServerStartError(msg)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if run_as.uid is not None and run_as.gid is not None:
            os.chown(self.pgdata, run_as.uid, run_as.gid)
        cmd = [
            str(self._server_bin / "pg_basebackup"),
            "-h", "127.0.0.1",
            "-p", str(self.primary.port),
            "-U", "postgres",
            "-D", str(self.pgdata),
            "-R",  # standby.signal + primary_conninfo: start as a streaming replica
            "-X", "stream",
            "-c", "fast",
            "--no-password",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            capture_output=True,
            check=False,
            timeout=120,
            user=run_as.uid,
            group=run_as.gid,
            extra_groups=run_as.extra_groups,
        )
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace")
            msg = f"pg_basebackup from port {self.primary.port} failed ({result.returncode}): {err}"
            raise ServerStartError(msg)


@dataclass(frozen=True, slots=True)
class ReplicatedPostgres:
    """A running primary and its streaming replica."""

    primary: EmbeddedPostgres
    replica: EmbeddedStandby

    @property
    def url(self) -> str:
        """``DATABASE_URL``: the primary."""
        return self.primary.url

    @property
    def read_url(self) -> str:
        """``DATABASE_READ_URL``: the replica."""
        return self.replica.url


@contextlib.contextmanager
def local_replicated_postgres(data_dir: Path | None = None) -> Iterator[ReplicatedPostgres]:
    """A started primary and replica, stopped (and temporary data removed) on exit."""
    with contextlib.ExitStack() as stack:
        temporary = data_dir is None
        if data_dir is None:
            tmp = tempfile.mkdtemp(prefix="agentmem-replica-")
            stack.callback(shutil.rmtree, tmp, True)
            data_dir = Path(tmp)
            data_dir.chmod(0o755)
        primary = EmbeddedPostgres(_subdir(data_dir, "primary"))
        replica = EmbeddedStandby(_subdir(data_dir, "replica"), primary)
        if temporary:  # clusters may live outside data_dir (see devservers.unprivileged)
            stack.callback(primary.destroy)
            stack.callback(replica.destroy)
        stack.enter_context(primary)
        stack.enter_context(replica)
        yield ReplicatedPostgres(primary, replica)


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    """Run a primary and a replica until Ctrl-C; prints the URLs to use."""
    with local_replicated_postgres() as servers:
        print(f"DATABASE_URL={servers.url}", flush=True)
        print(f"DATABASE_READ_URL={servers.read_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
