"""``open_memory``: the one way a process opens the memory layer.

It creates **one** Redis client and **one** PostgreSQL pool, hands them to every store of a
namespace (facts, status and locks; the event streams; the versioned documents), migrates the
schema, and closes both when the ``async with`` block ends::

    config = MemoryConfig(redis_url="redis://localhost:6379/0", database_url="postgresql://...")
    async with open_memory(config, namespace="run-1") as m:
        await m.memory.store_fact("research-1", "Streams came in Redis 5.0.", "streams")
        log = m.events("run")
        doc = await m.db.read("section/streams")

It is also the one place that chooses which client to use for a given deployment.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from memory._resource import AsyncResource
from memory.agent_memory import RedisAgentMemory
from memory.connections import MemoryConfig, RedisClient, connect_redis, postgres_pool
from memory.errors import AgentMemoryError
from memory.events import EventStore
from memory.keys import validate_id
from memory.namespace import drop_redis_namespace
from memory.run_index import RunIndex
from memory.shared_db import SharedAgentDB

logger = logging.getLogger(__name__)


class Memory(AsyncResource):
    """The stores of one namespace, sharing one Redis client and one PostgreSQL pool."""

    def __init__(
        self,
        client: RedisClient,
        namespace: str,
        db: SharedAgentDB | None = None,
    ) -> None:
        self.namespace = namespace
        self.memory = RedisAgentMemory(client, namespace)
        self._client = client
        self._db = db

    @property
    def db(self) -> SharedAgentDB:
        """The versioned documents (PostgreSQL); an error if no database was configured."""
        if self._db is None:
            msg = "no PostgreSQL configured for this memory; set DATABASE_URL"
            raise AgentMemoryError(msg)
        return self._db

    def events(
        self, stream: str, *, max_deliveries: int = 5, reclaim_idle_ms: int = 30_000
    ) -> EventStore:
        """One stream of this namespace, on the shared client."""
        return EventStore(
            self._client,
            self.namespace,
            stream,
            max_deliveries=max_deliveries,
            reclaim_idle_ms=reclaim_idle_ms,
        )

    @property
    def runs(self) -> RunIndex:
        """The index of every run (shared by all namespaces), on the shared client."""
        return RunIndex(self._client)

    async def drop(self) -> tuple[int, int]:
        """Delete this namespace: every Redis key and every document version.

        Returns how many keys and how many versions were deleted.
        """
        keys = await drop_redis_namespace(self._client, self.namespace)
        versions = await self._db.drop_all() if self._db is not None else 0
        return keys, versions


@asynccontextmanager
async def open_memory(
    config: MemoryConfig, namespace: str, *, migrate: bool = True
) -> AsyncIterator[Memory]:
    """Open the stores of ``namespace``; everything opened here is closed on the way out.

    Redis is asked whether it is a cluster node (which picks the client), and the PostgreSQL
    pool opens its first connection, before this returns: a wrong URL, refused credentials or
    a server that is down are reported at once (:class:`~memory.errors.InvalidConfigError`,
    :class:`~memory.errors.ServerUnavailableError`).
    """
    validate_id(namespace, "namespace")
    client = await connect_redis(config)
    memory: Memory | None = None
    try:
        db: SharedAgentDB | None = None
        if config.database_url is not None:
            pool = await postgres_pool(config, config.database_url)
            db = SharedAgentDB(pool, namespace, call_deadline=config.call_deadline)
            db.own(pool.close)
        memory = Memory(client, namespace, db)
        memory.own(client.aclose)
        if db is not None:
            memory.own(db.aclose)
            if migrate:
                await db.migrate()
    except BaseException:
        if memory is not None:
            await memory.aclose()
        else:
            await client.aclose()
        raise
    async with memory:
        yield memory
