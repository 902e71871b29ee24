"""The history runs on a Redis Cluster, and their own fault: a failover that loses writes.

``python -m agentmem.chaos --history --cluster`` runs the workload against :class:`ClusterServers`:
a local 3-primary + 3-replica cluster (:class:`devservers.cluster.LocalCluster`) and one
PostgreSQL. The workload processes reach the cluster directly (a cluster client is redirected
to every node, which one relay cannot stand for), so the faults that cut or drop a process's
traffic hit its PostgreSQL relay only, and ``redis rollback`` does not apply.

``cluster failover`` (:func:`cluster_failover`, in every cluster run) makes the window of
asynchronous replication certain, as tests/test_cluster_failover.py does: the replica of the
primary serving the run's namespace (every key of a namespace shares one hash slot) is
paused (SIGSTOP) and its link closed, the workload goes on 1-2 s against the primary alone,
the primary is SIGKILLed and the replica resumed; the cluster promotes it after the node
timeout (2 s), without the writes of that window: lock and semaphore keys, stream entries,
consumer-group acks and pending entries. Once the promotion is seen, the killed node is (as
the seed draws) either started again at once, to rejoin as the new primary's replica (a
durable writer that saw a replica then waits for it to resync, some 5 s on 2 cores, before
its next batch), or left down for the rest of the run (the new primary has no replica: the
writer confirms on it alone). Between runs the cluster is made whole again
(:meth:`ClusterServers.heal`).

What the checker may expect: the leases lost with the window had expired before the new
primary served anything (the failover takes longer than their 1.5 s TTL), fencing tokens and
documents live in PostgreSQL, and a task's effect is a conditional PostgreSQL write, so a
handoff redelivered because its ack was lost is applied once.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import anyio
from redis.asyncio.cluster import RedisCluster

from agentmem.devservers import EmbeddedPostgres
from agentmem.devservers.cluster import ClusterNode, LocalCluster
from agentmem.memory.connections import MemoryConfig, connect_redis
from agentmem.memory.keys import Keyspace

_PROMOTION_WAIT = 30.0  # seconds for the cluster to promote the replica


class ClusterServers:
    """A local Redis Cluster and PostgreSQL that chaos may crash and start at will."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="agentmem-chaos-cluster-"))
        self.folder.chmod(0o755)
        self.redis = LocalCluster(self.folder / "cluster")
        self.postgres = EmbeddedPostgres(self.folder / "postgres")

    def start(self) -> None:
        self.redis.start()
        self.postgres.start()

    def heal(self) -> None:
        """Start every node a fault left stopped, and wait until the cluster is whole."""
        for node in self.redis.nodes:
            if not node.running:
                node.start()
        self.redis.wait_healthy(90.0)

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.destroy()
        shutil.rmtree(self.folder, ignore_errors=True)


async def owner_of(cluster: LocalCluster, namespace: str) -> ClusterNode:
    """The node serving ``namespace``'s hash slot now."""
    client = await connect_redis(MemoryConfig(redis_url=cluster.url, redis_cluster=True))
    try:
        assert isinstance(client, RedisCluster)
        node = client.get_node_from_key(Keyspace(namespace).fact_seq())
        assert node is not None
        return cluster.node_on(int(node.port))
    finally:
        await client.aclose()


async def fail_over(
    cluster: LocalCluster, namespace: str, window: float, *, restart: bool = True
) -> tuple[ClusterNode, ClusterNode, float]:
    """Kill the primary of ``namespace`` after ``window`` seconds of writes its replica did
    not get; return the killed node, the promoted one, and the seconds until it was promoted
    (with ``restart``, the killed node is then started again, as its replica)."""
    victim = await owner_of(cluster, namespace)
    [replica] = cluster.replicas_of(victim)
    replica.pause()
    try:
        victim.disconnect_replicas()
        await anyio.sleep(window)
        victim.crash()
    finally:
        replica.resume()
    killed = time.monotonic()
    with anyio.fail_after(_PROMOTION_WAIT):
        while replica.port not in await anyio.to_thread.run_sync(cluster.primary_ports):  # noqa: ASYNC110 - polled, the cluster signals nothing
            await anyio.sleep(0.1)
    promoted = time.monotonic() - killed
    if restart:
        await anyio.to_thread.run_sync(victim.start)
    return victim, replica, promoted


def failover_window(rng: random.Random) -> float:
    """Seconds of writes the promoted replica will not have."""
    return rng.uniform(1.0, 2.0)
