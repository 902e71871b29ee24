"""Natural ids work in every store, stay apart from each other, and never reach a glob."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as redis

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.keys import encode_part
from agentmem.memory.namespace import drop_redis_namespace
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


async def keys_of(client: redis.Redis, namespace: str) -> set[bytes]:
    """Every key of ``namespace``, found by prefix rather than by a pattern."""
    prefix = f"agentmem:{{{encode_part(namespace)}}}:".encode()
    return {k async for k in client.scan_iter(count=1000) if k.startswith(prefix)}


async def test_a_lock_on_customer_42_is_held_fenced_and_released(
    redis_client: redis.Redis, pg_pool: asyncpg.Pool, namespace: str
) -> None:
    """'customer:42' is a lock resource like any other, separate from 'customer%3A42'."""
    db = SharedAgentDB(pg_pool, namespace)
    await db.migrate()
    memory = RedisAgentMemory(redis_client, namespace, fences=db.issue_fencing_token)
    lease = await memory.acquire_lock("customer:42", "agent 1")
    assert lease is not None
    assert await memory.acquire_lock("customer:42", "agent 2") is None
    assert await memory.acquire_lock("customer%3A42", "agent 2") is not None
    assert await memory.release_lock(lease)
    again = await memory.acquire_lock("customer:42", "agent 2")
    assert again is not None
    assert again.fencing_token is not None
    assert lease.fencing_token is not None
    assert again.fencing_token > lease.fencing_token


async def test_a_category_with_slash_and_colon_round_trips(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Facts in 'market/eu:2026' read back under that name and are listed as it."""
    memory = RedisAgentMemory(redis_client, namespace)
    await memory.store_fact("a b", "EU market grows", "market/eu:2026", {"k": "v"})
    await memory.store_fact("a b", "other", "market/eu%3A2026")

    [fact] = await memory.get_facts_by_category("market/eu:2026")

    assert (fact.fact, fact.category, fact.agent_id) == ("EU market grows", "market/eu:2026", "a b")
    assert await memory.list_categories() == ["market/eu%3A2026", "market/eu:2026"]


async def test_a_document_key_with_colons_is_stored_as_given(
    pg_pool: asyncpg.Pool, namespace: str
) -> None:
    """'report:section:1' writes, reads back and is listed by its prefix, unchanged."""
    db = SharedAgentDB(pg_pool, f"{namespace}:docs")
    await db.migrate()
    await db.write("report:section:1", {"text": "intro"}, "writer 1")
    await db.write("report:section:1", {"text": "intro v2"}, "writer 1", expected_version=1)

    document = await db.read("report:section:1")

    assert document is not None
    assert (document.value, document.version) == ({"text": "intro v2"}, 2)
    assert await db.keys("report:") == ["report:section:1"]


async def test_an_agent_id_with_a_space_has_a_status_listed_under_its_name(
    redis_client: redis.Redis, namespace: str
) -> None:
    """'a b' and 'a%20b' are two agents; the live list decodes both names."""
    memory = RedisAgentMemory(redis_client, namespace)
    await memory.set_agent_status("a b", "working", "space")
    await memory.set_agent_status("a%20b", "idle", "percent")

    live = await memory.list_live_agents()
    status = await memory.get_agent_status("a b")

    assert [(s.agent_id, s.status) for s in live] == [("a b", "working"), ("a%20b", "idle")]
    assert status is not None
    assert status.detail == "space"


async def test_a_stream_named_with_special_characters_publishes_once_per_key(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A stream 'run:1 [main]' and an idempotency key 'job:7*' work as given."""
    events = EventStore(redis_client, namespace, "run:1 [main]")
    event = AgentEvent(event_type="note", agent_id="a b", payload={"x": 1})
    first = await events.publish(event, idempotency_key="job:7*")
    assert await events.publish(event, idempotency_key="job:7*") == first
    [read] = await events.read_events()
    assert (read.agent_id, read.payload) == ("a b", {"x": 1})


@pytest.mark.parametrize(
    ("dropped", "kept"),
    [
        ("run??1", "runAB1"),
        ("run*", "run-other"),
        ("run[AB]1", "runA1"),
        ("run\\", "run\\\\"),
        ("x:*", "x:y"),
        ("a b", "a%20b"),
    ],
)
async def test_dropping_a_namespace_leaves_lookalike_namespaces_intact(
    redis_client: redis.Redis, namespace: str, dropped: str, kept: str
) -> None:
    """Glob characters in a run id select exactly that run's keys, never a neighbour's."""
    dropped, kept = f"{namespace}-{dropped}", f"{namespace}-{kept}"
    for ns in (dropped, kept):
        memory = RedisAgentMemory(redis_client, ns)
        await memory.store_fact("a", "fact", "c")
        await memory.set_agent_status("a", "idle")
        await memory.acquire_lock("r", "a")
        await EventStore(redis_client, ns).publish(AgentEvent(event_type="x", agent_id="a"))
    before = await keys_of(redis_client, kept)

    count = await drop_redis_namespace(redis_client, dropped)

    assert count == len(before)
    assert await keys_of(redis_client, dropped) == set()
    assert await keys_of(redis_client, kept) == before
