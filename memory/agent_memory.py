"""``RedisAgentMemory``: the article's facade over shared facts, agent status and locks.

It keeps the article's method names and delegates each concern to its own module
(:mod:`memory.facts`, :mod:`memory.status`, :mod:`memory.locks`), all on one Redis client.
Locks get their fencing tokens from PostgreSQL when given a token source (``fences``;
:func:`memory.layer.open_memory` wires the namespace's document store in); without one their
leases carry no fencing token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from agentmem.memory._resource import AsyncResource
from agentmem.memory.connections import RedisClient
from agentmem.memory.facts import Fact, FactStore, NewFact
from agentmem.memory.keys import Keyspace
from agentmem.memory.limits import Limits
from agentmem.memory.locks import HeldLock, Lease, LockManager, TokenIssuer
from agentmem.memory.status import AgentStatus, StatusBoard


class RedisAgentMemory(AsyncResource):
    """Facts, status and locks shared by the agents of one namespace.

    Processes get one from :func:`memory.layer.open_memory` (one client for every store).
    """

    def __init__(
        self,
        client: RedisClient,
        namespace: str = "default",
        *,
        limits: Limits | None = None,
        fences: TokenIssuer | None = None,
    ) -> None:
        self.keys = Keyspace(namespace)
        self._facts = FactStore(client, self.keys, limits=limits)
        self._statuses = StatusBoard(client, self.keys, limits=limits)
        self._locks = LockManager(client, self.keys, fences=fences)

    def use_fences(self, fences: TokenIssuer | None) -> None:
        """Issue the locks' fencing tokens with ``fences`` (PostgreSQL's, same namespace)."""
        self._locks.fences = fences

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
        return await self._facts.store_fact(
            agent_id, fact, category, metadata, idempotency_key=idempotency_key
        )

    def check_facts(self, agent_id: str, facts: Sequence[NewFact]) -> None:
        """Raise what :meth:`store_facts` would raise for this batch, without sending it."""
        self._facts.check_facts(agent_id, facts)

    async def store_facts(self, agent_id: str, facts: Sequence[NewFact]) -> list[int]:
        return await self._facts.store_facts(agent_id, facts)

    async def get_facts_by_category(self, category: str) -> list[Fact]:
        return await self._facts.get_facts_by_category(category)

    async def get_facts(self, ids: Sequence[int]) -> list[Fact]:
        return await self._facts.get_facts(ids)

    async def list_categories(self) -> list[str]:
        return await self._facts.list_categories()

    async def count_facts(self) -> int:
        return await self._facts.count_facts()

    # status
    async def set_agent_status(
        self, agent_id: str, status: str, detail: str = "", ttl_seconds: float = 15.0
    ) -> AgentStatus:
        return await self._statuses.set_agent_status(agent_id, status, detail, ttl_seconds)

    async def get_agent_status(self, agent_id: str) -> AgentStatus | None:
        return await self._statuses.get_agent_status(agent_id)

    async def list_live_agents(self) -> list[AgentStatus]:
        return await self._statuses.list_live_agents()

    # locks
    async def acquire_lock(
        self, resource: str, agent_id: str, ttl_seconds: float = 30.0, *, fenced: bool = True
    ) -> Lease | None:
        return await self._locks.acquire_lock(resource, agent_id, ttl_seconds, fenced=fenced)

    async def release_lock(self, lease: Lease) -> bool:
        return await self._locks.release_lock(lease)

    async def extend_lock(self, lease: Lease, ttl_seconds: float | None = None) -> bool:
        return await self._locks.extend_lock(lease, ttl_seconds)

    def lock(
        self,
        resource: str,
        agent_id: str,
        *,
        ttl_seconds: float = 30.0,
        timeout: float | None = None,
        fenced: bool = True,
    ) -> AbstractAsyncContextManager[HeldLock]:
        return self._locks.lock(
            resource, agent_id, ttl_seconds=ttl_seconds, timeout=timeout, fenced=fenced
        )
