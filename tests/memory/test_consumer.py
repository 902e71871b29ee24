"""Consumer groups: shared work, reclaim from dead workers, dead letters, requeue."""

from __future__ import annotations

from functools import partial

import anyio
import pytest
import redis.asyncio as redis

from agentmem.memory._codec import as_str
from agentmem.memory.consumer import DeadLetter
from agentmem.memory.errors import AgentMemoryError
from agentmem.memory.events import AgentEvent, EventStore
from tests.conditions import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(redis_client: redis.Redis, namespace: str) -> EventStore:
    return EventStore(redis_client, namespace, "work", max_deliveries=3, reclaim_idle_ms=200)


def task(n: int) -> AgentEvent:
    return AgentEvent(event_type="task", agent_id="orchestrator", payload={"n": n})


async def test_two_workers_of_one_group_share_entries_without_duplicates(
    store: EventStore,
) -> None:
    """Each entry goes to exactly one of the group's workers."""
    await store.publish_many([task(n) for n in range(20)])
    seen: dict[str, list[int]] = {"w-1": [], "w-2": []}

    async def work(name: str) -> None:
        group = store.group("writers", name)
        await group.ensure()
        while deliveries := await group.read(count=3, block_ms=50):
            for delivery in deliveries:
                seen[name].append(delivery.event.payload["n"])
                await group.ack(delivery)
                await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(work, "w-1")
        tg.start_soon(work, "w-2")

    assert sorted(seen["w-1"] + seen["w-2"]) == list(range(20))
    assert seen["w-1"]
    assert seen["w-2"]


async def test_an_entry_taken_by_a_killed_worker_is_processed_by_another(
    store: EventStore,
) -> None:
    """A worker that never acknowledges loses its entry to a live one after the idle time."""
    await store.publish(task(7))
    dead = store.group("writers", "dead-1")
    await dead.ensure()
    [taken] = await dead.read(count=1)  # ... and the worker dies here, without acking

    live = store.group("writers", "live-1")
    assert await live.read(count=1, block_ms=10) == []
    [reclaimed] = await eventually(lambda: live.read(count=1, block_ms=10))

    assert reclaimed.entry_id == taken.entry_id
    assert reclaimed.attempts == 2
    await live.ack(reclaimed)
    await anyio.sleep(0.25)
    assert await live.read(count=1, block_ms=10) == []


async def test_an_entry_that_keeps_failing_is_dead_lettered_with_the_reason(
    store: EventStore,
) -> None:
    """After ``max_deliveries`` failed attempts the entry moves to the dead-letter stream."""
    entry_id = await store.publish(task(1))
    group = store.group("writers", "w-1")
    await group.ensure()
    outcomes: list[bool] = []
    with anyio.fail_after(10):
        while len(outcomes) < 3:
            for delivery in await group.read(count=1, block_ms=50):
                outcomes.append(await group.fail(delivery, f"boom {delivery.attempts}"))

    assert outcomes == [False, False, True]
    [letter] = await store.dead_letters()
    assert (letter.entry_id, letter.group, letter.reason) == (entry_id, "writers", "boom 3")
    await anyio.sleep(0.25)
    assert await group.read(count=1, block_ms=10) == []


async def test_a_worker_that_crashes_on_an_entry_every_time_dead_letters_it(
    store: EventStore,
) -> None:
    """An entry delivered more than ``max_deliveries`` times is never handed out again."""
    await store.publish(task(1))
    for n in range(3):
        worker = store.group("writers", f"crashing-{n}")
        await worker.ensure()
        if n == 0:
            assert len(await worker.read(count=1, block_ms=10)) == 1  # ... and it crashes
        else:  # the next worker takes it over once it has been idle long enough
            assert len(await eventually(partial(worker.read, count=1, block_ms=10))) == 1

    told: list[tuple[AgentEvent, str]] = []

    async def give_up(event: AgentEvent, reason: str) -> None:
        told.append((event, reason))

    following = store.group("writers", "next-1", on_give_up=give_up)

    async def dead_lettered() -> list[DeadLetter]:
        assert await following.read(block_ms=10) == []  # never handed out again
        return await store.dead_letters()

    [letter] = await eventually(dead_lettered)  # once the third delivery has been idle
    assert "never acknowledged" in letter.reason
    [(event, reason)] = told
    assert (event.payload, reason) == ({"n": 1}, letter.reason)


@pytest.mark.parametrize(
    "fields",
    [
        {"garbage": "yes"},
        {"type": "t", "agent": "a", "ts": "2026-01-01T00:00:00+00:00", "payload": "{not json"},
        {"type": "t", "agent": "a", "ts": "2026-01-01T00:00:00+00:00", "payload": "[1, 2]"},
        {"type": "t", "agent": "a", "ts": "yesterday", "payload": "{}"},
    ],
)
async def test_a_malformed_entry_is_dead_lettered_and_good_ones_still_flow(
    store: EventStore, redis_client: redis.Redis, fields: dict[str, str]
) -> None:
    """An entry written by hand that is not an event never reaches the worker."""
    group = store.group("writers", "w-1")
    await group.ensure()
    await store.publish(task(1))
    bad_id = as_str(await redis_client.xadd(store.stream_key, fields))  # type: ignore[arg-type]
    await store.publish(task(2))

    deliveries = await group.read(count=10)

    assert [d.event.payload["n"] for d in deliveries] == [1, 2]
    [letter] = await store.dead_letters()
    assert letter.entry_id == bad_id
    assert letter.fields == fields
    assert "not a valid event" in letter.reason


async def test_a_requeued_dead_letter_is_consumed_again(store: EventStore) -> None:
    """Requeue appends the original entry anew and removes the dead letter."""
    await store.publish(task(5))
    group = store.group("writers", "w-1")
    await group.ensure()
    [delivery] = await group.read(count=1)
    assert await group.fail(delivery, "bad luck", final=True)
    [letter] = await store.dead_letters()

    await store.requeue(letter.dead_letter_id)

    [again] = await group.read(count=1)
    assert again.event.payload == {"n": 5}
    assert again.entry_id != delivery.entry_id
    assert await store.dead_letters() == []
    with pytest.raises(AgentMemoryError, match="no dead letter"):
        await store.requeue(letter.dead_letter_id)


async def test_an_entry_its_live_worker_keeps_touching_is_not_reclaimed(
    store: EventStore,
) -> None:
    """A worker on a long step touches its entry; another worker does not take it over."""
    await store.publish(task(3))
    busy = store.group("writers", "busy-1")
    await busy.ensure()
    [delivery] = await busy.read(count=1)
    other = store.group("writers", "other-1")

    for _ in range(4):
        await anyio.sleep(0.1)
        await busy.touch(delivery)
        assert await other.read(count=1, block_ms=10) == []

    # it stops touching (it died): now the entry moves on
    [reclaimed] = await eventually(lambda: other.read(count=1, block_ms=10))
    assert reclaimed.entry_id == delivery.entry_id
    assert reclaimed.attempts == 2


async def test_pending_summary_shows_pending_entries_and_lag_without_changing_the_group(
    store: EventStore,
) -> None:
    """Pending per consumer, the oldest entry, the lag; reading it twice claims nothing."""
    await store.publish_many([task(n) for n in range(5)])
    worker = store.group("writers", "w-1")
    await worker.ensure()
    taken = await worker.read(count=2, block_ms=10)

    summary = await worker.pending_summary()
    again = await store.group("writers", "observer").pending_summary()

    assert summary.pending == 2
    assert summary.consumers == {"w-1": 2}
    assert summary.oldest_id == taken[0].entry_id
    assert summary.oldest_deliveries == 1
    assert summary.lag == 3
    assert summary.last_delivered_id == taken[1].entry_id
    assert again.pending == 2
    assert again.consumers == {"w-1": 2}  # the observer claimed nothing


async def test_pending_summary_of_a_missing_group_says_to_create_it(store: EventStore) -> None:
    """A group that was never ensured is an error naming ensure()."""
    with pytest.raises(AgentMemoryError, match="ensure"):
        await store.group("nobody", "w-1").pending_summary()
