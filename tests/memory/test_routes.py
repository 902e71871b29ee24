"""Routes: an event of a routed type is appended to the log and to its route's stream in one
atomic step, so a worker reads only the events it acts on; dead letters go back to their route."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest
import redis.asyncio as redis

from agentmem.memory.errors import InvalidIdError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.keys import Keyspace

pytestmark = pytest.mark.anyio

ROUTES = {"section.assigned": "writer", "section.drafted": "review", "run.completed": "end"}


@pytest.fixture
def store(redis_client: redis.Redis, namespace: str) -> EventStore:
    return EventStore(redis_client, namespace, "run", reclaim_idle_ms=200, routes=ROUTES)


def event(event_type: str, n: int = 0) -> AgentEvent:
    return AgentEvent(event_type=event_type, agent_id="a-1", payload={"n": n})


async def test_a_routed_event_is_in_the_log_and_on_its_route_only(store: EventStore) -> None:
    """The log has every event; each route's group gets the events routed to it, nothing else."""
    await store.publish(event("llm.called"))
    await store.publish(event("section.assigned", 1), idempotency_key="assigned-1")
    await store.publish_many([event("section.drafted", 2), event("llm.called", 3)])
    await store.publish(event("section.assigned", 4))

    log = await store.read_events()
    writers, reviewers = store.group("writer", "w-1", route="writer"), store.group("r", "r-1")
    await writers.ensure()
    await reviewers.ensure()  # on the log itself: sees everything
    took = [d.event.payload["n"] for d in await writers.read(count=10, block_ms=10)]

    assert [e.event_type for e in log] == [
        "llm.called",
        "section.assigned",
        "section.drafted",
        "llm.called",
        "section.assigned",
    ]
    assert took == [1, 4]
    assert len(await reviewers.read(count=10, block_ms=10)) == 5
    review = store.group("review", "r-1", route="review")
    await review.ensure()
    assert [d.event.payload["n"] for d in await review.read(count=10, block_ms=10)] == [2]


async def test_publishing_a_routed_event_again_with_its_key_routes_it_once(
    store: EventStore,
) -> None:
    """An idempotent publish repeated (a resend after a lost reply) adds nothing anywhere."""
    first = await store.publish(event("section.assigned"), idempotency_key="k")
    again = await store.publish(event("section.assigned"), idempotency_key="k")
    group = store.group("writer", "w-1", route="writer")
    await group.ensure()

    assert again == first
    assert len(await store.read_events()) == 1
    assert len(await group.read(count=10, block_ms=10)) == 1


async def test_publish_many_returns_the_log_ids_in_order(store: EventStore) -> None:
    """The ids returned are the log's, whatever the mix of routed and unrouted events."""
    ids = await store.publish_many(
        [event("section.assigned", 0), event("llm.called", 1), event("section.drafted", 2)]
    )

    assert [e.event_id for e in await store.read_events()] == ids


async def test_every_follower_of_a_route_sees_it_without_a_group(store: EventStore) -> None:
    """Followers of the end route wake for the run's end, not for the events before it."""
    seen: list[list[str]] = [[], []]

    async def follow(into: list[str]) -> None:
        async with aclosing(store.subscribe("0-0", route="end", block_ms=50)) as log:
            async for got in log:
                into.append(got.event_type)
                return

    async with anyio.create_task_group() as tg:
        for into in seen:
            tg.start_soon(follow, into)
        await store.publish_many([event("section.assigned"), event("llm.called")])
        await store.publish(event("run.completed"), idempotency_key="done")

    assert seen == [["run.completed"], ["run.completed"]]


async def test_a_dead_letter_from_a_route_is_requeued_onto_that_route(store: EventStore) -> None:
    """Requeue puts the entry back where its workers read, not on the log."""
    await store.publish(event("section.drafted", 7))
    review = store.group("review", "r-1", route="review")
    await review.ensure()
    [delivery] = await review.read(block_ms=10)
    await review.fail(delivery, "model said no", final=True)

    [letter] = await store.dead_letters()
    await store.requeue(letter.dead_letter_id)
    [again] = await review.read(block_ms=10)

    assert letter.route == "review"
    assert again.event.payload["n"] == 7
    assert len(await store.read_events()) == 1  # the log is the history: nothing added


async def test_a_route_must_be_a_valid_id(redis_client: redis.Redis, namespace: str) -> None:
    with pytest.raises(InvalidIdError):
        EventStore(redis_client, namespace, "run", routes={"section.assigned": "bad\nroute"})


async def test_a_keyed_batch_sent_again_appends_nothing_and_gives_the_same_ids(
    store: EventStore,
) -> None:
    """A batch resent after a lost reply (the write-ahead log's resend) repeats nothing, in
    the log or on the routes; an event without a key is appended each time."""
    batch: list[tuple[AgentEvent, str | None]] = [
        (event("section.assigned", 1), "a-1"),
        (event("llm.called", 2), "c-2"),
        (event("section.drafted", 3), "d-3"),
    ]
    first = await store.publish_keyed(batch)
    again = await store.publish_keyed([*batch, (event("llm.called", 4), None)])
    writers = store.group("writer", "w-1", route="writer")
    await writers.ensure()

    assert again[:3] == first
    assert [e.payload["n"] for e in await store.read_events()] == [1, 2, 3, 4]
    assert [d.event.payload["n"] for d in await writers.read(count=10, block_ms=10)] == [1]


def test_route_keys_never_collide_with_each_other_or_with_a_stream(namespace: str) -> None:
    """Route ``c`` of ``a.b`` is not route ``b.c`` of ``a``, and neither is a stream ``a.b.c``."""
    keys = Keyspace(namespace)

    assert keys.route("a.b", "c") != keys.route("a", "b.c")
    assert keys.route("run", "writer") != keys.stream("run.writer")
    assert keys.route("a:b", "c") != keys.route("a", "b:c")


async def test_a_stream_named_like_a_route_does_not_read_that_route(
    store: EventStore, redis_client: redis.Redis, namespace: str
) -> None:
    """A store for stream ``run.writer`` sees nothing routed to route ``writer`` of ``run``."""
    await store.publish(event("section.assigned", 1))
    lookalike = EventStore(redis_client, namespace, "run.writer", reclaim_idle_ms=200)
    group = lookalike.group("writer", "w-1")
    await group.ensure()

    assert await group.read(block_ms=10) == []
    assert await lookalike.read_events() == []
    writers = store.group("writer", "w-1", route="writer")
    await writers.ensure()
    [delivery] = await writers.read(block_ms=10)
    assert delivery.event.payload == {"n": 1}
