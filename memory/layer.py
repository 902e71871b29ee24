"""``open_memory`` and :class:`Memory`: the one way a process opens the memory layer.

It creates **one** Redis client and **one** PostgreSQL pool, hands them to every store of a
namespace (facts, status and locks; the event streams; the versioned documents), migrates the
schema, and closes both when the ``async with`` block ends::

    config = MemoryConfig(redis_url="redis://localhost:6379/0", database_url="postgresql://...")
    async with open_memory(config, namespace="run-1") as m:
        await m.memory.store_fact("research-1", "Streams came in Redis 5.0.", "streams")
        log = m.events("run")
        doc = await m.db.read("section/streams")

It is also the one place that chooses which client to use for a given deployment: a cluster
client when ``REDIS_URL`` names a Redis Cluster node, and a second PostgreSQL pool, on the read
replica, when ``database_read_url`` is set (used by ``m.db.replica()``; never migrated).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import asyncpg

from agentmem.memory._resource import AsyncResource
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import MemoryConfig, RedisClient, connect_redis, postgres_pool
from agentmem.memory.errors import AgentMemoryError, ServerUnavailableError
from agentmem.memory.events import EventStore
from agentmem.memory.keys import TenantKeys, validate_id
from agentmem.memory.limits import Limits
from agentmem.memory.namespace import drop_redis_namespace
from agentmem.memory.retry import retrying
from agentmem.memory.run_index import RunIndex
from agentmem.memory.semaphore import Semaphore
from agentmem.memory.shared_db import SharedAgentDB

logger = logging.getLogger(__name__)


class Memory(AsyncResource):
    """The stores of one namespace, sharing one Redis client and one PostgreSQL pool."""

    def __init__(
        self, client: RedisClient, namespace: str, *, limits: Limits | None = None
    ) -> None:
        self.namespace = namespace
        self.limits = limits or Limits()
        self.memory = RedisAgentMemory(client, namespace, limits=self.limits)
        self._client = client
        self._db: SharedAgentDB | None = None

    def attach_db(self, db: SharedAgentDB) -> None:
        """Use (and close) ``db`` for this namespace's documents, and for its locks' fencing
        tokens (see :mod:`memory.locks`)."""
        self._db = db
        self.memory.use_fences(db.issue_fencing_token)
        self.own(db.aclose)

    @property
    def client(self) -> RedisClient:
        """The shared Redis client (for stores outside any namespace: the service's queues)."""
        return self._client

    @property
    def db(self) -> SharedAgentDB:
        """The versioned documents (PostgreSQL); an error if no database was configured."""
        if self._db is None:
            msg = "no PostgreSQL configured for this memory; set DATABASE_URL"
            raise AgentMemoryError(msg)
        return self._db

    def events(
        self,
        stream: str,
        *,
        max_deliveries: int = 5,
        reclaim_idle_ms: int = 30_000,
        routes: Mapping[str, str] | None = None,
    ) -> EventStore:
        """One stream of this namespace (with its ``routes``, see :mod:`memory.events`), on the
        shared client."""
        return EventStore(
            self._client,
            self.namespace,
            stream,
            max_deliveries=max_deliveries,
            reclaim_idle_ms=reclaim_idle_ms,
            limits=self.limits,
            routes=routes,
        )

    def semaphore(self, name: str, limit: int, *, ttl_seconds: float = 30.0) -> Semaphore:
        """At most ``limit`` holders of ``name`` at once across every client of this
        namespace (a run-wide cap), on the shared client."""
        return Semaphore(self._client, self.memory.keys, name, limit, ttl_seconds=ttl_seconds)

    def tenant_semaphore(
        self, tenant: str, name: str, limit: int, *, ttl_seconds: float = 30.0
    ) -> Semaphore:
        """At most ``limit`` holders of ``name`` at once across every run of ``tenant`` (a
        tenant-wide cap, in the tenant's slot), on the shared client."""
        keys = TenantKeys(validate_id(tenant, "tenant"))
        return Semaphore(self._client, keys, name, limit, ttl_seconds=ttl_seconds)

    def scope(self, namespace: str) -> Memory:
        """The stores of another namespace on this one's Redis client and PostgreSQL pools.

        For processes that serve many runs (the web view): one client, one pool, any number of
        namespaces. The view owns nothing; close the :class:`Memory` it came from.
        """
        view = Memory(self._client, validate_id(namespace, "namespace"), limits=self.limits)
        if self._db is not None:
            view._db = self._db.for_namespace(namespace)
            view.memory.use_fences(view._db.issue_fencing_token)
        return view

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
    config: MemoryConfig, namespace: str, *, migrate: bool = True, wait: float = 0.0
) -> AsyncIterator[Memory]:
    """Open the stores of ``namespace``; everything opened here is closed on the way out.

    Redis is asked whether it is a cluster node (which picks the client), and the PostgreSQL
    pool opens its first connection, before this returns: a wrong URL, refused credentials or
    a server that is down are reported at once (:class:`~memory.errors.InvalidConfigError`,
    :class:`~memory.errors.ServerUnavailableError`). With ``wait`` (seconds), a server that
    does not answer yet is tried again until then, for processes that may start before it.
    """
    validate_id(namespace, "namespace")
    memory: Memory | None = None
    async for attempt in retrying(
        ServerUnavailableError, attempts=1_000 if wait > 0 else 1, timeout=wait, maximum=1.0
    ):
        with attempt:
            memory = await _connect(config, namespace, migrate=migrate)
    assert memory is not None
    async with memory:
        yield memory


async def _connect(config: MemoryConfig, namespace: str, *, migrate: bool) -> Memory:
    client = await connect_redis(config)
    memory = Memory(client, namespace, limits=config.limits)
    memory.own(client.aclose)
    try:
        if config.database_url is not None:
            pool = await postgres_pool(config, config.database_url)
            db = SharedAgentDB(
                pool, namespace, call_deadline=config.call_deadline, limits=config.limits
            )
            db.own(pool.close)
            memory.attach_db(db)
            if config.database_read_url is not None:
                db.read_pool = await _replica_pool(config, config.database_read_url)
                db.own(db.read_pool.close)
            if migrate:
                await db.migrate()
    except BaseException:
        await memory.aclose()
        raise
    return memory


async def _replica_pool(config: MemoryConfig, dsn: str) -> asyncpg.Pool:
    """The read replica's pool; one that is down now is opened lazily (reads fall back to the
    primary until it answers), but a wrong URL or refused credentials are reported at once."""
    try:
        return await postgres_pool(config, dsn)
    except ServerUnavailableError as exc:
        logger.warning("%s; lag-tolerant reads use the primary until it answers", exc)
        return await postgres_pool(config, dsn, lazy=True)
