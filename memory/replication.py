"""Is a write safe from a failover: on its primary, and on a replica of that primary?

Redis replicates asynchronously: a primary acknowledges a write before any replica has it.
If the primary dies in that moment and its replica is promoted (Redis Cluster does this after
``cluster-node-timeout``), the acknowledged write is gone. :class:`~memory.durable.DurableWriter`
therefore keeps each write in its local log until this module says a replica holds it.

Every logged write leaves a mark in a hash of its namespace (the idempotency record of a fact,
the publish key of an event), so one check (:func:`check_replicated`) works for any
connection, and after a failover too:

1. read the marks (pipelined to the node owning the namespace's slot): a mark that is
   missing means the write was lost (or never arrived) and must be sent again;
2. read that node's ``INFO replication`` (in the same pipeline on a single server): its
   replication id and offset, and how many replicas are connected to it. The marks were read
   before, so every present write sits at or below that offset of that replication history;
3. nudge the replicas: write a short-lived fence key and ``WAIT 1 <ms>`` on the same
   connection (one pipeline to that node), which makes the primary ask its replicas for an
   acknowledgement at once instead of at their next once-a-second report (skipped when no
   replica is connected: there is nobody to ask);
4. read ``INFO replication`` again: a write is safe once an online replica has acknowledged
   the offset of step 2, in the same replication history. A new primary (a failover) has a
   new replication id, and the writes are checked again from step 1.

``WAIT``'s own answer is not trusted for the writes: it counts replicas for the writes of
*its* connection, and a client with a pool (a cluster client above all) cannot promise that
the write and the ``WAIT`` share one. Offsets of a named replication history do not depend on
connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from agentmem.memory._boundary import translated
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import ServerUnavailableError

# The slot is moving (a failover or resharding): try again once the cluster has settled.
_MOVING = (
    redis_errors.MovedError,
    redis_errors.AskError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.SlotNotCoveredError,
)


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a write leaves its trace: a field of a hash (its idempotency record)."""

    hash_key: str
    field: str


@dataclass(frozen=True, slots=True)
class Position:
    """A point in one primary's replication history."""

    replid: str
    offset: int


@dataclass(frozen=True, slots=True)
class Replication:
    """What one check saw on the primary owning the marks."""

    present: list[bool]  # per mark: is the write on the primary now?
    primary: Position | None  # the primary's position after the marks were read; None: not one
    acked: list[int]  # the offsets its online replicas have acknowledged
    replicas: int = 0  # replicas connected to it (online or still syncing)

    def safe(self, written_at: Position) -> bool:
        """True if a replica holds everything up to ``written_at`` of this primary's history."""
        return (
            self.primary is not None
            and written_at.replid == self.primary.replid
            and any(offset >= written_at.offset for offset in self.acked)
        )


@translated
async def check_replicated(
    client: RedisClient, marks: Sequence[Mark], fence_key: str, *, nudge_ms: int = 100
) -> Replication:
    """Read ``marks`` (all in the slot of ``fence_key``), then the replication state of their
    primary, after asking its replicas to acknowledge (waiting up to ``nudge_ms``)."""
    try:
        present, before = await _marks_then_info(client, marks, fence_key)
        if before.get("role") != "master":
            return Replication(present, None, [])
        primary = Position(str(before["master_replid"]), int(before["master_repl_offset"]))
        replicas = int(before.get("connected_slaves", 0))
        if not replicas:
            return Replication(present, primary, [])  # no replica to ask
        await _nudge(client, fence_key, nudge_ms)
        after = await _info(client, fence_key)
    except _MOVING as exc:
        raise _moving(exc) from exc
    if after.get("role") != "master" or after.get("master_replid") != primary.replid:
        return Replication(present, None, [], replicas)
    acked = [
        int(replica["offset"])
        for name, replica in after.items()
        if name.startswith("slave") and isinstance(replica, dict)
        if replica.get("state") == "online"
    ]
    return Replication(present, primary, acked, replicas)


async def _marks_then_info(
    client: RedisClient, marks: Sequence[Mark], key: str
) -> tuple[list[bool], dict[str, Any]]:
    """Which marks exist, then ``INFO replication`` of their node: one pipeline on a single
    server (commands of one connection run in order), two round trips on a cluster (a cluster
    pipeline cannot carry ``INFO`` to a chosen node)."""
    pipe = client.pipeline(transaction=False)
    for mark in marks:
        pipe.hexists(mark.hash_key, mark.field)
    if isinstance(client, RedisCluster):
        present = [bool(found) for found in await pipe.execute()] if marks else []
        return present, await _info(client, key)
    pipe.info("replication")
    *found, info = await pipe.execute()
    return [bool(exists) for exists in found], info


async def _nudge(client: RedisClient, fence_key: str, nudge_ms: int) -> None:
    """Write the fence and ``WAIT`` on one connection: the primary asks its replicas to
    acknowledge what they have now."""
    pipe = client.pipeline(transaction=False)
    pipe.set(fence_key, "1", px=60_000)
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(fence_key)
        pipe.execute_command("WAIT", 1, nudge_ms, target_nodes=node)
    else:
        pipe.execute_command("WAIT", 1, nudge_ms)
    await pipe.execute()


async def _info(client: RedisClient, key: str) -> dict[str, Any]:
    """``INFO replication`` of the node that owns ``key`` (the server, if not a cluster)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        info: dict[str, Any] = await client.info("replication", target_nodes=node)
        return info
    return await client.info("replication")


def _moving(exc: BaseException) -> ServerUnavailableError:
    msg = f"the cluster is moving the slot ({type(exc).__name__}); the check is retried later"
    return ServerUnavailableError(msg)
