"""Agent status: TTL heartbeats, so a silent agent disappears by itself."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as redis

from agentmem.memory.agent_memory import RedisAgentMemory
from tests.conditions import eventually

pytestmark = pytest.mark.anyio


async def test_status_reads_back_with_detail_and_expiry(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A status set with a TTL reads back with its detail and an expiry TTL ahead."""
    memory = RedisAgentMemory(redis_client, namespace)
    written = await memory.set_agent_status("writer-1", "working", "section intro", ttl_seconds=10)

    status = await memory.get_agent_status("writer-1")

    assert status == written
    assert status is not None
    assert (status.status, status.detail) == ("working", "section intro")
    assert (status.expires_at - status.updated_at).total_seconds() == pytest.approx(10, abs=0.01)


async def test_a_status_not_refreshed_expires_and_leaves_the_live_list(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Only agents that keep beating stay listed; the others vanish after their TTL."""
    memory = RedisAgentMemory(redis_client, namespace)
    await memory.set_agent_status("crashed-1", "working", ttl_seconds=0.3)
    await memory.set_agent_status("alive-1", "idle", ttl_seconds=10)
    assert [s.agent_id for s in await memory.list_live_agents()] == ["alive-1", "crashed-1"]

    async def expired() -> bool:
        return await memory.get_agent_status("crashed-1") is None

    await eventually(expired)
    assert [s.agent_id for s in await memory.list_live_agents()] == ["alive-1"]


async def test_a_refreshed_status_outlives_its_first_ttl(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A heartbeat renews the TTL, so a live agent never drops out."""
    memory = RedisAgentMemory(redis_client, namespace)
    for _ in range(4):
        await memory.set_agent_status("beating-1", "working", ttl_seconds=0.3)
        await anyio.sleep(0.15)

    assert [s.agent_id for s in await memory.list_live_agents()] == ["beating-1"]


async def test_statuses_are_per_namespace(redis_client: redis.Redis, namespace: str) -> None:
    """Another namespace lists none of this one's agents."""
    await RedisAgentMemory(redis_client, namespace).set_agent_status("a-1", "idle")

    other = RedisAgentMemory(redis_client, f"{namespace}-other")

    assert await other.list_live_agents() == []
    assert await other.get_agent_status("a-1") is None
