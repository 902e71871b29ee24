"""The article's approach, written plainly: one awaited command per step.

This is the baseline the memory layer is compared with, not code to copy: storing a fact
takes three round trips (and a crash between them leaves half a fact), reading a category
takes one round trip per fact, metadata is stringified, and the lock release is GET then DEL.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from agentmem.memory._codec import as_str


class NaiveMemory:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.prefix = f"naive:{namespace}"

    def fact_key(self, fact_id: int | str) -> str:
        return f"{self.prefix}:fact:{fact_id}"

    def category_key(self, category: str) -> str:
        return f"{self.prefix}:category:{category}"

    async def store_fact(
        self, agent_id: str, fact: str, category: str, metadata: dict[str, Any] | None = None
    ) -> int:
        fact_id = int(await self.client.incr(f"{self.prefix}:fact_counter"))
        record: dict[str | bytes, str] = {"fact": fact, "agent_id": agent_id, "category": category}
        record.update({k: str(v) for k, v in (metadata or {}).items()})
        await self.client.hset(self.fact_key(fact_id), mapping=record)  # type: ignore[arg-type]
        await self.client.sadd(self.category_key(category), fact_id)
        return fact_id

    async def get_facts_by_category(self, category: str) -> list[dict[Any, Any]]:
        ids = await self.client.smembers(self.category_key(category))
        return [await self.client.hgetall(self.fact_key(as_str(i))) for i in ids]

    async def acquire_lock(self, resource: str, agent_id: str, ttl: int = 30) -> bool:
        return bool(
            await self.client.set(f"{self.prefix}:lock:{resource}", agent_id, nx=True, ex=ttl)
        )

    async def release_lock(self, resource: str, agent_id: str) -> bool:
        key = f"{self.prefix}:lock:{resource}"
        if await self.client.get(key) == agent_id.encode():
            await self.client.delete(key)  # another holder may own the lock by now
            return True
        return False
