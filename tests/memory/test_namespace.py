"""Dropping a namespace removes all of its data and nothing of any other namespace."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as redis

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.namespace import drop_redis_namespace
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


async def fill(client: redis.Redis, pool: asyncpg.Pool, namespace: str) -> SharedAgentDB:
    memory, events = RedisAgentMemory(client, namespace), EventStore(client, namespace, "run")
    await memory.store_facts(
        "a", [NewFact(f"fact {i}", f"c{i % 3}", None, f"k{i}") for i in range(700)]
    )
    await memory.set_agent_status("a", "idle")
    assert await memory.acquire_lock("doc", "a")
    await events.publish(AgentEvent(event_type="x", agent_id="a"), idempotency_key="once")
    db = SharedAgentDB(pool, namespace)
    await db.migrate()
    await db.write("doc", 1, "a")
    await db.write("doc", 2, "a")
    return db


async def test_dropping_a_namespace_removes_its_keys_and_documents_only(
    redis_client: redis.Redis, pg_pool: asyncpg.Pool, namespace: str
) -> None:
    """Every key and document version of the run goes; the neighbouring run keeps all."""
    gone = await fill(redis_client, pg_pool, namespace)
    kept = await fill(redis_client, pg_pool, f"{namespace}-kept")

    dropped = await drop_redis_namespace(redis_client, namespace)
    versions = await gone.drop_all()

    assert dropped >= 10
    assert versions == 2
    assert [k async for k in redis_client.scan_iter(match=f"agentmem:{{{namespace}}}:*")] == []
    assert await gone.read("doc") is None
    assert await gone.keys() == []
    survivor = RedisAgentMemory(redis_client, f"{namespace}-kept")
    assert await survivor.count_facts() == 700
    assert (await kept.read("doc")) is not None
