"""The event log: publish, read since, subscribe, idempotent publish, replay, trimming."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import anyio
import pytest
import redis.asyncio as redis

from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.projection import CountByType

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(redis_client: redis.Redis, namespace: str) -> EventStore:
    return EventStore(redis_client, namespace, "log", reclaim_idle_ms=200)


def event(n: int, event_type: str = "thing.happened") -> AgentEvent:
    return AgentEvent(event_type=event_type, agent_id="a-1", payload={"n": n})


async def test_published_events_read_back_with_payload_types_and_utc_time(
    store: EventStore,
) -> None:
    """Payload JSON types and the aware UTC timestamp survive the stream."""
    payload: dict[str, object] = {
        "n": 1,
        "ratio": 0.25,
        "ok": False,
        "none": None,
        "items": [1, "two"],
        "d": {},
    }
    sent = AgentEvent(event_type="fact.stored", agent_id="research-1", payload=payload)
    entry_id = await store.publish(sent)

    [got] = await store.read_events()

    assert got.event_id == entry_id
    assert got.payload == payload
    assert (got.event_type, got.agent_id) == ("fact.stored", "research-1")
    assert got.timestamp == sent.timestamp
    assert got.timestamp.tzinfo == UTC


async def test_read_events_since_is_exclusive_and_pages(store: EventStore) -> None:
    """Reading since an id returns only the entries after it, ``count`` at a time."""
    ids = await store.publish_many([event(n) for n in range(10)])

    page = await store.read_events(since=ids[2], count=3)

    assert [e.payload["n"] for e in page] == [3, 4, 5]
    assert await store.last_id() == ids[-1]


async def test_subscribe_receives_events_published_after_it_started(store: EventStore) -> None:
    """A subscriber from "$" sees later events and none of the earlier ones."""
    await store.publish(event(0))
    got: list[int] = []

    async def follow() -> None:
        async for received in store.subscribe(block_ms=100):
            got.append(received.payload["n"])
            if len(got) == 3:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.1)
            for n in (1, 2, 3):
                await store.publish(event(n))

    assert got == [1, 2, 3]


async def test_publishing_again_with_the_same_key_appends_once(store: EventStore) -> None:
    """An idempotent publish returns the first entry id and adds nothing."""
    first = await store.publish(event(1), idempotency_key="section-a-v1")
    again = await store.publish(event(1), idempotency_key="section-a-v1")

    assert again == first
    assert len(await store.read_events()) == 1


async def test_replay_rebuilds_a_view_from_the_start_or_any_entry(store: EventStore) -> None:
    """Replaying counts every event, or only those after the given id."""
    ids = await store.publish_many(
        [event(n, "a") for n in range(1500)] + [event(n, "b") for n in range(3)]
    )

    assert await store.replay(CountByType()) == Counter({"a": 1500, "b": 3})
    assert await store.replay(CountByType(), since=ids[1499]) == Counter({"b": 3})


async def test_trimming_keeps_every_entry_a_group_has_not_acknowledged(
    store: EventStore,
) -> None:
    """Entries acknowledged by all groups go; the oldest one any group needs stays."""
    ids = await store.publish_many([event(n) for n in range(6)])
    fast, slow = store.group("fast", "f-1"), store.group("slow", "s-1")
    await fast.ensure()
    await slow.ensure()
    for delivery in await fast.read(count=6):
        await fast.ack(delivery)
    taken = await slow.read(count=3)
    for delivery in taken[:2]:
        await slow.ack(delivery)

    trimmed = await store.trim_acknowledged()

    assert trimmed == 2
    assert [e.event_id for e in await store.read_events()] == ids[2:]
    assert [d.entry_id for d in await slow.read(count=10)] == ids[3:]


async def test_streams_of_two_namespaces_are_separate(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Events of one namespace never show up in another's stream of the same name."""
    await EventStore(redis_client, namespace, "log").publish(event(1))

    other = EventStore(redis_client, f"{namespace}-other", "log")

    assert await other.read_events() == []
    assert await other.last_id() == "0-0"


def test_events_need_an_aware_timestamp() -> None:
    """A naive timestamp is refused rather than guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        AgentEvent(event_type="x", agent_id="a", timestamp=datetime(2026, 1, 1))
