"""Consumer groups under faults: a stalled worker's entry, a lost reply, a long block."""

from __future__ import annotations

import os
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.devservers import ServerUrls
from agentmem.memory._codec import as_str
from agentmem.memory.connections import MemoryConfig, connect_redis
from agentmem.memory.consumer import ConsumerGroup, Delivery
from agentmem.memory.errors import DeliveryLostError, ServerUnavailableError
from agentmem.memory.events import AgentEvent, EventStore
from tests.memory.blackhole import BlackholeProxy

pytestmark = pytest.mark.anyio

# A proxy in front of one node cannot cut off a cluster client, which talks to every node.
through_proxy = pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
    reason="the proxy fronts one standalone server",
)


def task(n: int) -> AgentEvent:
    return AgentEvent(event_type="task", agent_id="orchestrator", payload={"n": n})


async def owner(store: EventStore, group: ConsumerGroup, entry_id: str) -> str | None:
    pending: Any = await store.client.xpending_range(
        store.stream_key, group.name, entry_id, entry_id, 1
    )
    return as_str(pending[0]["consumer"]) if pending else None


async def reclaim(group: ConsumerGroup) -> Delivery:
    """The first entry ``group`` reclaims, once its owner has been idle long enough."""
    deliveries: list[Delivery] = []
    with anyio.fail_after(10):
        while not deliveries:  # each read blocks a while for new entries
            deliveries = await group.read(count=1, block_ms=50)
    [delivery] = deliveries
    return delivery


async def test_a_stalled_worker_learns_it_lost_its_entry_and_cannot_take_it_back(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A's touch, fail and ack after B reclaimed its entry each raise and leave B's claim."""
    store = EventStore(redis_client, namespace, "work", max_deliveries=5, reclaim_idle_ms=200)
    await store.publish(task(1))
    a, b = store.group("workers", "a-1"), store.group("workers", "b-1")
    await a.ensure()
    [taken] = await a.read(count=1)  # ... and A stalls past reclaim_idle_ms
    reclaimed = await reclaim(b)
    assert reclaimed.entry_id == taken.entry_id

    with pytest.raises(DeliveryLostError, match="b-1"):
        await a.touch(taken)
    with pytest.raises(DeliveryLostError):
        await a.fail(taken, "boom")
    with pytest.raises(DeliveryLostError):
        await a.fail(taken, "boom", final=True)
    with pytest.raises(DeliveryLostError):
        await a.ack(taken)

    assert await owner(store, b, taken.entry_id) == "b-1"
    assert await store.dead_letters() == []
    await b.touch(reclaimed)
    await b.ack(reclaimed)
    assert await owner(store, b, taken.entry_id) is None
    with pytest.raises(DeliveryLostError, match="already acknowledged"):
        await a.ack(taken)


@through_proxy
async def test_an_entry_whose_delivery_reply_was_lost_comes_with_the_next_read(
    servers: ServerUrls, namespace: str
) -> None:
    """XREADGROUP's reply is dropped: the next read delivers its entry, not the ones in hand."""
    port = urlsplit(servers.redis_url).port
    assert port is not None
    async with BlackholeProxy(port).running() as proxy:
        # no blind retry of a dropped command: XREADGROUP > is not idempotent
        client = redis.Redis(port=proxy.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
        try:
            store = EventStore(client, namespace, "work", reclaim_idle_ms=60_000)
            group = store.group("workers", "w-1")
            await group.ensure()
            await store.publish(task(1))
            [in_hand] = await group.read(count=1, block_ms=10)
            await store.publish(task(2))

            proxy.drop_reply_to(b"XREADGROUP")
            with pytest.raises(ServerUnavailableError):
                await group.read(count=5, block_ms=10)
            [recovered] = await group.read(count=5, block_ms=10)

            assert recovered.event.payload == {"n": 2}
            assert recovered.attempts == 1
            await group.ack(recovered)
            await group.ack(in_hand)
            assert await group.read(count=5, block_ms=10) == []
        finally:
            await client.aclose()


async def test_a_block_longer_than_the_command_timeout_is_not_an_outage(
    servers: ServerUrls, namespace: str
) -> None:
    """A group read and a follower blocking past the command timeout get empty, no error."""
    config = MemoryConfig(redis_url=servers.redis_url, command_timeout=0.3)
    client = await connect_redis(config)
    try:
        store = EventStore(client, namespace, "work")
        group = store.group("workers", "w-1")
        await group.ensure()
        assert await group.read(count=1, block_ms=800) == []

        seen: list[AgentEvent] = []
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                async with aclosing(store.subscribe("0-0", block_ms=800)) as log:
                    async for event in log:
                        seen.append(event)
                        return

            tg.start_soon(follow)
            await anyio.sleep(0.8)  # the follower waits on an idle stream past the timeout
            await store.publish(task(1))
        assert [event.payload for event in seen] == [{"n": 1}]
    finally:
        await client.aclose()


async def test_a_pending_summary_shows_holders_oldest_entry_and_lag_without_changing_them(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Who holds what, the oldest pending entry and the undelivered count; reading it twice
    counts no delivery."""
    store = EventStore(redis_client, namespace, "work", reclaim_idle_ms=60_000)
    a, b = store.group("workers", "a-1"), store.group("workers", "b-1")
    await a.ensure()
    ids = await store.publish_many([task(n) for n in range(5)])
    await a.read(count=2, block_ms=10)
    [done] = await b.read(count=1, block_ms=10)
    await b.ack(done)

    await a.pending_summary()
    summary = await a.pending_summary()

    assert summary.pending == 2
    assert summary.consumers == {"a-1": 2}
    assert summary.oldest_id == ids[0]
    assert summary.oldest_deliveries == 1
    assert summary.oldest_idle_ms is not None
    assert summary.lag == 2
    assert summary.last_delivered_id == ids[2]
