"""A write whose reply is lost takes effect once: retried writes carry their own token."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory import AgentEvent, EventStore, MemoryConfig, Semaphore
from agentmem.memory.connections import RedisClient, connect_redis
from agentmem.memory.facts import FactStore
from agentmem.memory.keys import Keyspace
from tests.memory.blackhole import BlackholeProxy
from tests.memory.test_boundary import port_of, via

pytestmark = [
    pytest.mark.anyio,
    # A proxy in front of one node cannot cut off a cluster client, which talks to every node.
    pytest.mark.skipif(
        os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
        reason="the proxy fronts one standalone server",
    ),
]


@asynccontextmanager
async def through_proxy(servers: ServerUrls) -> AsyncIterator[tuple[BlackholeProxy, RedisClient]]:
    """A proxy in front of the session's Redis, and a client that talks through it."""
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        config = MemoryConfig(redis_url=via(servers.redis_url, proxy.port))
        client = await connect_redis(config)
        try:
            yield proxy, client
        finally:
            await client.aclose()


async def warm_up(slots: Semaphore) -> None:
    """Take and give back a permit: the connection is open and the script loaded."""
    permit = await slots.try_acquire("warm-up")
    assert permit is not None
    assert await slots.release(permit)


async def test_a_fact_whose_reply_is_lost_is_stored_once(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """store_fact without a key, its reply dropped: one fact stored, its id returned."""
    async with through_proxy(servers) as (proxy, client):
        facts = FactStore(client, Keyspace(namespace))
        await facts.store_fact("a", "before", "c")  # the script is loaded
        proxy.drop_next_reply()
        fact_id = await facts.store_fact("a", "once", "c")
        assert proxy.replies_dropped == 1

    stored = await FactStore(redis_client, Keyspace(namespace)).get_facts_by_category("c")
    assert [(f.id, f.fact) for f in stored if f.fact == "once"] == [(fact_id, "once")]
    assert len(stored) == 2


async def test_an_event_whose_reply_is_lost_is_appended_once(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """publish without a key, its reply dropped: one entry appended, its id returned."""
    async with through_proxy(servers) as (proxy, client):
        events = EventStore(client, namespace)
        await events.publish(
            AgentEvent(event_type="note", agent_id="a", payload={"n": 0})
        )  # the script is loaded
        proxy.drop_next_reply()
        entry_id = await events.publish(
            AgentEvent(event_type="note", agent_id="a", payload={"n": 1})
        )
        assert proxy.replies_dropped == 1

    log = await EventStore(redis_client, namespace).read_events()
    appended = [(e.event_id, e.payload) for e in log if e.payload == {"n": 1}]
    assert appended == [(entry_id, {"n": 1})]
    assert len(log) == 2


async def test_a_permit_whose_grant_is_lost_is_granted_once_and_not_leaked(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """try_acquire, its reply dropped: the caller gets the permit it took, and no other."""
    async with through_proxy(servers) as (proxy, client):
        slots = Semaphore(client, Keyspace(namespace), "llm", 1)
        await warm_up(slots)
        proxy.drop_next_reply()
        permit = await slots.try_acquire("writer-1")
        assert proxy.replies_dropped == 1
        assert permit is not None

        ours = Semaphore(redis_client, Keyspace(namespace), "llm", 1)
        assert await ours.holders() == ["writer-1"]
        assert await slots.release(permit)
        assert await ours.holders() == []


async def test_a_cancelled_acquire_leaves_no_permit_behind(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """try_acquire cancelled after the server granted it (the reply never came): released."""
    async with through_proxy(servers) as (proxy, client):
        slots = Semaphore(client, Keyspace(namespace), "llm", 1)
        await warm_up(slots)
        ours = Semaphore(redis_client, Keyspace(namespace), "llm", 1)
        proxy.drop_next_reply(close=False)
        async with anyio.create_task_group() as tg:

            async def acquire() -> None:
                await slots.try_acquire("writer-1")

            tg.start_soon(acquire)
            with anyio.fail_after(10):
                while await ours.holders() != ["writer-1"]:
                    await anyio.sleep(0.01)  # (granted there, the reply awaited here)
            tg.cancel_scope.cancel()

        assert await ours.holders() == []
