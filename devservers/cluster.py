"""A local Redis Cluster: three primaries and three replicas of the wheel's ``valkey-server``.

For tests (``AGENTMEM_TEST_REDIS=cluster``, ``make test-cluster``) and for trying the
application on a cluster (``python -m agentmem.devservers.cluster``). Each node is an
:class:`~devservers.servers.EmbeddedRedis` with cluster mode on and its append-only file;
``valkey-cli --cluster create`` (shipped beside the server) assigns the slots and the replicas.
Nodes time out after ``node_timeout_ms``, so that a killed primary's replica takes over
within a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agentmem.devservers.base import StartStop
from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.servers import EmbeddedRedis, find_redis_server

logger = logging.getLogger(__name__)


class ClusterNode(EmbeddedRedis):
    """One node of a local cluster."""

    name = "redis-node"

    def __init__(self, data_dir: Path, node_timeout_ms: int) -> None:
        super().__init__(data_dir, port=_cluster_port())
        self.node_timeout_ms = node_timeout_ms

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
        ]  # fmt: skip

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): it neither answers nor reads its replication link."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def disconnect_replicas(self) -> None:
        """Close this primary's links to its replicas; writes after this reach none of them
        until a replica reconnects (about a second later, unless it is paused)."""
        _ask(self.port, b"CLIENT KILL TYPE replica\r\n")


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too; both below 65536."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(25000)
        if _free(port) and _free(port + 10000):
            return port
    msg = "found no free pair of ports for a cluster node"
    raise ServerStartError(msg)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cli(binary: Path) -> Path:
    cli = binary.with_name(binary.name.replace("-server", "-cli"))
    if not cli.exists():
        msg = f"{cli.name} not found beside {binary}; it is needed to create a cluster"
        raise ServerStartError(msg)
    return cli


def _ask(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(command)
        return sock.recv(65536)


class LocalCluster(StartStop):
    """Six cluster nodes on free loopback ports; :attr:`url` names one of them."""

    def __init__(
        self, data_dir: Path, *, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000
    ) -> None:
        self.data_dir = data_dir
        self.replicas = replicas
        count = primaries * (1 + replicas)
        self.nodes = [ClusterNode(data_dir / f"node-{i}", node_timeout_ms) for i in range(count)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> None:
        started = time.monotonic()
        for node in self.nodes:
            node.start()
        if not (self.nodes[0].data_dir / "created").exists():
            self._create()
        self.wait_healthy(timeout)
        logger.info(
            "cluster of %d nodes ready in %.1fs", len(self.nodes), time.monotonic() - started
        )

    def _create(self) -> None:
        cli = _cli(self.nodes[0].binary)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        result = subprocess.run(
            [str(cli), "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            msg = f"creating the cluster failed: {result.stdout[-1500:]}{result.stderr[-500:]}"
            raise ServerStartError(msg)
        (self.nodes[0].data_dir / "created").touch()

    def healthy(self) -> bool:
        """Every running node sees the cluster as ok, with every slot served, and every
        running replica is in sync with its primary (a replica still making its first copy
        could not take over: it has no data to serve)."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info = _ask(node.port, b"CLUSTER INFO\r\n")
                replication = _ask(node.port, b"INFO replication\r\n")
            except OSError:
                return False
            if b"cluster_state:ok" not in info or b"cluster_slots_ok:16384" not in info:
                return False
            if b"role:slave" in replication and b"master_link_status:up" not in replication:
                return False
        return True

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                msg = f"the local cluster was not healthy within {timeout:.0f}s"
                raise ServerStartError(msg)
            time.sleep(0.1)

    def primary_ports(self) -> list[int]:
        """The ports of the nodes that are primaries now."""
        ports = []
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(OSError):
                    if b"role:master" in _ask(node.port, b"INFO replication\r\n"):
                        ports.append(node.port)
        return ports

    def node_on(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        """The running nodes that replicate ``primary`` now."""
        found = []
        for node in self.nodes:
            if node is not primary and node.running:
                with contextlib.suppress(OSError):
                    info = _ask(node.port, b"INFO replication\r\n")
                    if f"master_port:{primary.port}\r\n".encode() in info:
                        found.append(node)
        return found

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def local_cluster(data_dir: Path | None = None) -> Iterator[LocalCluster]:
    """A started local cluster, stopped (and its temporary data removed) on exit."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            tmp = tempfile.mkdtemp(prefix="agentmem-cluster-")
            stack.callback(shutil.rmtree, tmp, True)
            data_dir = Path(tmp)
        yield stack.enter_context(LocalCluster(data_dir))


def main() -> None:
    """Run a local cluster until Ctrl-C; prints a REDIS_URL for it."""
    find_redis_server()
    with local_cluster() as cluster:
        print(f"REDIS_URL={cluster.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
