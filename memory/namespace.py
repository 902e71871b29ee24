"""Dropping a namespace: every Redis key and every document of one run, gone.

Runs are namespaces, and a namespace's keys never expire on their own (facts, streams and the
idempotency hashes are the run's record). When a run is no longer wanted, this removes it:
Redis keys are found with SCAN (never KEYS, which blocks the server) and UNLINKed in batches;
:meth:`memory.shared_db.SharedAgentDB.drop_all` deletes the run's document versions.

The SCAN pattern is the namespace's key prefix with its glob characters escaped
(:meth:`memory.keys.Keyspace.pattern`), so a run id such as ``run??1`` or ``run*`` matches
its own keys and no other run's.
"""

from __future__ import annotations

from agentmem.memory._boundary import translated
from agentmem.memory.connections import RedisClient
from agentmem.memory.keys import Keyspace

_BATCH = 500


@translated
async def drop_redis_namespace(client: RedisClient, namespace: str) -> int:
    """Unlink every key of ``namespace``; returns how many there were."""
    keys = Keyspace(namespace)
    dropped = 0
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=keys.pattern(), count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            dropped += int(await client.unlink(*batch))
            batch = []
    if batch:
        dropped += int(await client.unlink(*batch))
    return dropped
