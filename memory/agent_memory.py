"""``RedisAgentMemory``: the article's facade over shared facts, agent status and locks.

It keeps the article's method names and delegates each concern to its own module
(:mod:`memory.facts`, :mod:`memory.status`, :mod:`memory.locks`), all on one Redis client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Self

import redis.asyncio as redis

from memory._resource import AsyncResource
from memory.facts import Fact, FactStore, NewFact
from memory.keys import Keyspace
from memory.limits import Limits
from memory.locks import HeldLock, Lease, LockManager
from memory.status import AgentStatus, StatusBoard


class RedisAgentMemory(AsyncResource):
    """Facts, status and locks shared by the agents of one namespace.

    Pass a client you own, or use :meth:`from_url`, which creates one and closes it in
    :meth:`aclose`.
    """

    def __init__(
        self, client: redis.Redis, namespace: str = "default", *, limits: Limits | None = None
    ) -> None:
        self.client = client
        self.keys = Keyspace(namespace)
        self.facts = FactStore(client, self.keys, limits=limits)
        self.statuses = StatusBoard(client, self.keys, limits=limits)
        self.locks = LockManager(client, self.keys)
        self._owns_client = False

    @classmethod
    def from_url(cls, url: str, namespace: str = "default", **kwargs: Any) -> Self:
        """A memory on a new client for ``url``, closed by :meth:`aclose`."""
        memory = cls(redis.Redis.from_url(url, **kwargs), namespace)
        memory._owns_client = True
        return memory

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    # facts
    async def store_fact(
        self,
        agent_id: str,
        fact: str,
        category: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        return await self.facts.store_fact(
            agent_id, fact, category, metadata, idempotency_key=idempotency_key
        )

    async def store_facts(self, agent_id: str, facts: Sequence[NewFact]) -> list[int]:
        return await self.facts.store_facts(agent_id, facts)

    async def get_facts_by_category(self, category: str) -> list[Fact]:
        return await self.facts.get_facts_by_category(category)

    async def get_facts(self, ids: Sequence[int]) -> list[Fact]:
        return await self.facts.get_facts(ids)

    async def list_categories(self) -> list[str]:
        return await self.facts.list_categories()

    async def count_facts(self) -> int:
        return await self.facts.count_facts()

    # status
    async def set_agent_status(
        self, agent_id: str, status: str, detail: str = "", ttl_seconds: float = 15.0
    ) -> AgentStatus:
        return await self.statuses.set_agent_status(agent_id, status, detail, ttl_seconds)

    async def get_agent_status(self, agent_id: str) -> AgentStatus | None:
        return await self.statuses.get_agent_status(agent_id)

    async def list_live_agents(self) -> list[AgentStatus]:
        return await self.statuses.list_live_agents()

    # locks
    async def acquire_lock(
        self, resource: str, agent_id: str, ttl_seconds: float = 30.0
    ) -> Lease | None:
        return await self.locks.acquire_lock(resource, agent_id, ttl_seconds)

    async def release_lock(self, lease: Lease) -> bool:
        return await self.locks.release_lock(lease)

    async def extend_lock(self, lease: Lease, ttl_seconds: float | None = None) -> bool:
        return await self.locks.extend_lock(lease, ttl_seconds)

    def lock(
        self, resource: str, agent_id: str, *, ttl_seconds: float = 30.0, timeout: float = 10.0
    ) -> AbstractAsyncContextManager[HeldLock]:
        return self.locks.lock(resource, agent_id, ttl_seconds=ttl_seconds, timeout=timeout)
