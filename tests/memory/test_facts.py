"""Shared facts: exact round trips, idempotency, one round trip per operation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis

from agentmem.devservers import ServerUrls
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import MemoryConfig, connect_redis
from agentmem.memory.errors import InvalidIdError, InvalidValueError
from agentmem.memory.facts import NewFact
from tests.memory.roundtrips import CountingConnection, counting_client, standalone_only

pytestmark = pytest.mark.anyio


@pytest.fixture
async def memory(redis_client: redis.Redis, namespace: str) -> RedisAgentMemory:
    return RedisAgentMemory(redis_client, namespace)


@pytest.fixture
async def counted(
    servers: ServerUrls, namespace: str
) -> AsyncIterator[tuple[RedisAgentMemory, type[CountingConnection]]]:
    client, counter = await counting_client(servers.redis_url)
    memory = RedisAgentMemory(client, namespace)
    await memory.store_fact("warm", "loads the scripts", "warmup")
    await memory.get_facts_by_category("warmup")
    yield memory, counter
    await client.aclose()


async def test_fact_and_metadata_round_trip_with_their_types(memory: RedisAgentMemory) -> None:
    """Metadata comes back with its JSON types, and the timestamp is aware UTC."""
    metadata: dict[str, object] = {
        "n": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "tags": ["a", 1],
        "nested": {},
    }
    before = datetime.now(UTC)
    fact_id = await memory.store_fact(
        "research-1", "Valkey forked Redis in 2024.", "history", metadata
    )

    [fact] = await memory.get_facts_by_category("history")

    assert fact.id == fact_id
    assert (fact.fact, fact.category, fact.agent_id) == (
        "Valkey forked Redis in 2024.",
        "history",
        "research-1",
    )
    assert fact.metadata == metadata
    assert type(fact.metadata["n"]) is int
    assert fact.timestamp.tzinfo is not None
    assert fact.timestamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= fact.timestamp <= datetime.now(UTC)


async def test_storing_with_the_same_idempotency_key_returns_the_first_id(
    memory: RedisAgentMemory,
) -> None:
    """A repeated idempotency key stores nothing new, singly, in a batch, or within one batch."""
    first = await memory.store_fact("a", "fact one", "c", idempotency_key="src-1")
    again = await memory.store_fact("a", "fact one (retry)", "c", idempotency_key="src-1")
    batch = await memory.store_facts(
        "a",
        [
            NewFact("fact two", "c", None, "src-2"),
            NewFact("fact two", "c", None, "src-2"),
            NewFact("fact one", "c", None, "src-1"),
        ],
    )

    assert again == first
    assert batch == [batch[0], batch[0], first]
    assert [f.fact for f in await memory.get_facts_by_category("c")] == ["fact one", "fact two"]
    assert await memory.count_facts() == 2


async def test_a_category_reads_back_in_id_order(memory: RedisAgentMemory) -> None:
    """Facts of a category come back in the order they were stored, across batches."""
    ids = await memory.store_facts("a", [NewFact(f"f{i}", "c") for i in range(30)])
    ids += [await memory.store_fact("a", "last", "c")]
    await memory.store_facts("a", [NewFact("other", "d")])

    facts = await memory.get_facts_by_category("c")

    assert [f.id for f in facts] == sorted(ids) == ids
    assert await memory.list_categories() == ["c", "d"]
    assert [f.fact for f in await memory.get_facts([ids[3], 999_999, ids[0]])] == ["f3", "f0"]


@standalone_only
async def test_single_and_batch_stores_are_one_round_trip_each(
    counted: tuple[RedisAgentMemory, type[CountingConnection]],
) -> None:
    """store_fact and store_facts of 500 facts in 20 categories each send one batch."""
    memory, counter = counted
    counter.sent = 0
    await memory.store_fact("a", "one fact", "solo", {"k": 1}, idempotency_key="k1")
    assert counter.sent == 1

    counter.sent = 0
    await memory.store_facts("a", [NewFact(f"fact {i}", f"cat-{i % 20}") for i in range(500)])
    assert counter.sent == 1


@standalone_only
async def test_reading_a_category_costs_the_same_round_trips_for_10_and_1000_facts(
    counted: tuple[RedisAgentMemory, type[CountingConnection]],
) -> None:
    """The category read is constant in round trips (the article's is one per fact)."""
    memory, counter = counted
    await memory.store_facts("a", [NewFact(f"small {i}", "small") for i in range(10)])
    await memory.store_facts("a", [NewFact(f"large {i}", "large") for i in range(1000)])

    counter.sent = 0
    small = await memory.get_facts_by_category("small")
    small_trips = counter.sent
    counter.sent = 0
    large = await memory.get_facts_by_category("large")

    assert (len(small), len(large)) == (10, 1000)
    assert counter.sent == small_trips == 1


async def test_namespaces_do_not_see_each_others_facts(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Two namespaces on one server keep separate facts, ids and categories."""
    left = RedisAgentMemory(redis_client, f"{namespace}-left")
    right = RedisAgentMemory(redis_client, f"{namespace}-right")
    await left.store_fact("a", "left fact", "shared-name")

    assert await right.get_facts_by_category("shared-name") == []
    assert await right.count_facts() == 0
    assert await right.store_fact("a", "right fact", "shared-name") == 1


@pytest.mark.parametrize("bad", ["", "x" * 257, "nul\x00", "tab\t", "new\nline", "\ud800", 42])
async def test_bad_categories_and_agent_ids_are_rejected_clearly(
    memory: RedisAgentMemory, bad: str
) -> None:
    """Empty, oversized, control-character, non-UTF-8 and non-string ids are refused."""
    with pytest.raises(InvalidIdError, match="category"):
        await memory.store_fact("a", "text", bad)
    with pytest.raises(InvalidIdError, match="agent_id"):
        await memory.store_fact(bad, "text", "c")
    assert await memory.count_facts() == 0


async def test_metadata_that_is_not_json_is_rejected_and_nothing_is_stored(
    memory: RedisAgentMemory,
) -> None:
    """A batch with one bad fact stores none of its facts."""
    with pytest.raises(InvalidValueError, match="not JSON"):
        await memory.store_facts(
            "a", [NewFact("ok", "c"), NewFact("bad", "c", {"when": datetime.now(UTC)})]
        )
    assert await memory.count_facts() == 0


async def test_facts_round_trip_on_a_client_that_decodes_responses(
    servers: ServerUrls, namespace: str
) -> None:
    """The store works the same whether the client returns bytes or str."""
    client = await connect_redis(MemoryConfig(redis_url=servers.redis_url), decode_responses=True)
    memory = RedisAgentMemory(client, namespace)
    await memory.store_facts("a", [NewFact("one", "c", {"n": 1}), NewFact("two", "c")])

    facts = await memory.get_facts_by_category("c")

    assert [(f.fact, f.metadata) for f in facts] == [("one", {"n": 1}), ("two", {})]
    assert [f.fact for f in await memory.get_facts([facts[1].id])] == ["two"]
    assert await memory.list_categories() == ["c"]
    await client.aclose()


async def test_records_stored_before_they_held_their_id_still_read_back(
    memory: RedisAgentMemory, redis_client: redis.Redis
) -> None:
    """A record in the earlier layout (no id inside) is read with its id, beside new ones."""
    await memory.store_fact("a", "new before", "c")
    legacy = (
        '{"fact": "old", "category": "c", "agent_id": "b", '
        '"timestamp": "2026-01-02T03:04:05.000006+00:00", "metadata": {"n": 1}}'
    )
    await redis_client.hset(memory.keys.fact_records(), "2", legacy)
    await redis_client.zadd(memory.keys.category("c"), {"2": 2})
    await redis_client.incr(memory.keys.fact_seq())
    await memory.store_fact("a", "new after", "c")

    facts = await memory.get_facts_by_category("c")

    assert [(f.id, f.fact, f.agent_id) for f in facts] == [
        (1, "new before", "a"),
        (2, "old", "b"),
        (3, "new after", "a"),
    ]
    assert facts[1].timestamp == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert facts[1].metadata == {"n": 1}
    assert await memory.get_facts([2, 3]) == facts[1:]


async def test_a_category_missing_a_record_reads_the_others(
    memory: RedisAgentMemory, redis_client: redis.Redis
) -> None:
    """An id whose record is gone is skipped, not an error."""
    await memory.store_facts("a", [NewFact("one", "c"), NewFact("two", "c")])
    await redis_client.hdel(memory.keys.fact_records(), "1")

    assert [f.fact for f in await memory.get_facts_by_category("c")] == ["two"]
