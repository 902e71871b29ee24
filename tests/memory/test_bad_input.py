"""Bad input fails at the boundary with the project's errors, and leaves nothing behind."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.errors import InvalidIdError, InvalidValueError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.limits import Limits
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio

TEN_MB = "x" * (10 * 1024 * 1024)


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


# (value, what the error says): JSON values every store refuses.
BAD_JSON = [
    ({"s": "lone \ud800 surrogate"}, "surrogate"),
    ({"\udfff": 1}, "surrogate"),
    ({"deep": deep(900)}, "nests deeper than 64"),
    ({"nan": float("nan")}, "not JSON"),
    ({"inf": float("inf")}, "not JSON"),
    ({"obj": object()}, "not JSON"),
    ({"bytes": b"x"}, "not JSON"),
    ({1: "int key"}, "key of type int"),
    ({"big": 10**5000}, "not JSON"),
    ({"set": {1, 2}}, "not JSON"),  # types a fast encoder would write, but JSON has no name for
    ({"when": date(2026, 1, 1)}, "not JSON"),
    ({"nested": [{"nan": [float("-inf")]}]}, "not JSON"),
    ({"huge": TEN_MB}, "cap of 1.0 MB"),
]


@pytest.fixture
async def db(pg_pool: asyncpg.Pool, namespace: str) -> SharedAgentDB:
    store = SharedAgentDB(pg_pool, namespace)
    await store.migrate()
    return store


@pytest.mark.parametrize(("metadata", "reason"), BAD_JSON)
async def test_bad_metadata_stores_no_fact_of_the_batch(
    redis_client: redis.Redis, namespace: str, metadata: dict[Any, Any], reason: str
) -> None:
    """One bad fact in a batch raises InvalidValueError and none of the batch is stored."""
    memory = RedisAgentMemory(redis_client, namespace)
    batch = [NewFact("good", "c", {"ok": 1}, "k1"), NewFact("bad", "d", metadata, "k2")]
    with pytest.raises(InvalidValueError, match=reason):
        await memory.store_facts("a", batch)
    assert await memory.count_facts() == 0
    assert await memory.list_categories() == []
    assert await redis_client.exists(memory.keys.fact_seq(), memory.keys.idempotency()) == 0


@pytest.mark.parametrize(
    ("fact", "reason"),
    [("\ud800", "surrogate"), ("  ", "blank"), (42, "must be a string"), (TEN_MB, "cap")],
)
async def test_bad_fact_text_is_refused(
    redis_client: redis.Redis, namespace: str, fact: Any, reason: str
) -> None:
    """Fact text must be a non-blank UTF-8 string under its cap."""
    memory = RedisAgentMemory(redis_client, namespace)
    with pytest.raises(InvalidValueError, match=reason):
        await memory.store_fact("a", fact, "c")
    assert await memory.count_facts() == 0


async def test_fact_text_with_nul_and_controls_round_trips(
    redis_client: redis.Redis, namespace: str
) -> None:
    """Redis holds any text: NUL and control characters in a fact read back unchanged."""
    memory = RedisAgentMemory(redis_client, namespace)
    await memory.store_fact("a", "nul \x00 tab \t bell \x07", "c", {"k\x00": "v\x1b"})
    [fact] = await memory.get_facts_by_category("c")
    assert (fact.fact, fact.metadata) == ("nul \x00 tab \t bell \x07", {"k\x00": "v\x1b"})


async def test_configured_caps_apply_and_name_the_field(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A store built with smaller Limits refuses what exceeds them, naming field and cap."""
    memory = RedisAgentMemory(redis_client, namespace, limits=Limits(fact_metadata_bytes=100))
    with pytest.raises(InvalidValueError, match=r"metadata of fact 'f' .* cap of 100 bytes"):
        await memory.store_fact("a", "f", "c", {"long": "y" * 100})
    assert await memory.store_fact("a", "f", "c", {"short": "y"}) == 1


def test_limits_must_be_positive_integers() -> None:
    """A cap of zero, a negative cap or a float cap is a configuration error."""
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidValueError, match="event_payload_bytes"):
            Limits(event_payload_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 10**20, "10", True, None])
async def test_bad_ttls_are_refused_for_statuses_and_locks(
    redis_client: redis.Redis, namespace: str, ttl: Any
) -> None:
    """A TTL must be a positive, finite number of seconds of at most a year."""
    memory = RedisAgentMemory(redis_client, namespace)
    with pytest.raises(InvalidValueError, match="ttl_seconds"):
        await memory.set_agent_status("a", "idle", ttl_seconds=ttl)
    with pytest.raises(InvalidValueError, match="ttl_seconds"):
        await memory.acquire_lock("r", "a", ttl_seconds=ttl)
    assert await memory.list_live_agents() == []
    assert await redis_client.exists(memory.keys.lock("r")) == 0


async def test_a_tiny_ttl_still_sets_a_status(redis_client: redis.Redis, namespace: str) -> None:
    """A TTL under a millisecond rounds up to one instead of failing in Redis."""
    memory = RedisAgentMemory(redis_client, namespace)
    status = await memory.set_agent_status("a", "idle", ttl_seconds=0.0001)
    assert status.status == "idle"


@pytest.mark.parametrize(
    ("status", "detail", "reason"),
    [("\ud800", "", "surrogate"), (1, "", "must be a string"), ("ok", "x" * 70_000, "cap")],
)
async def test_bad_status_text_is_refused(
    redis_client: redis.Redis, namespace: str, status: Any, detail: str, reason: str
) -> None:
    """Status and detail must be UTF-8 strings under the status cap."""
    memory = RedisAgentMemory(redis_client, namespace)
    with pytest.raises(InvalidValueError, match=reason):
        await memory.set_agent_status("a", status, detail)
    assert await memory.get_agent_status("a") is None


@pytest.mark.parametrize(
    ("payload", "reason"), BAD_JSON[:7] + BAD_JSON[8:]
)  # AgentEvent refuses int keys
async def test_a_bad_payload_publishes_nothing(
    redis_client: redis.Redis, namespace: str, payload: dict[str, Any], reason: str
) -> None:
    """publish and publish_many refuse the event; the stream stays empty."""
    events = EventStore(redis_client, namespace)
    bad = AgentEvent(event_type="x", agent_id="a", payload=payload)
    with pytest.raises(InvalidValueError, match=reason):
        await events.publish(bad)
    with pytest.raises(InvalidValueError, match=reason):
        await events.publish(bad, idempotency_key="once")
    with pytest.raises(InvalidValueError, match=reason):
        await events.publish_many([AgentEvent(event_type="ok", agent_id="a"), bad])
    assert await events.read_events() == []


async def test_an_event_agent_id_follows_the_id_rule(
    redis_client: redis.Redis, namespace: str
) -> None:
    """An event whose agent id holds a control character is refused by publish."""
    events = EventStore(redis_client, namespace)
    with pytest.raises(InvalidIdError, match="agent_id"):
        await events.publish(AgentEvent(event_type="x", agent_id="a\x00"))
    with pytest.raises(InvalidIdError, match="idempotency_key"):
        await events.publish(AgentEvent(event_type="x", agent_id="a"), idempotency_key="\n")
    assert await events.read_events() == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        *BAD_JSON,
        ({"nul": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        (["\\\x00"], "NUL"),
    ],
)
async def test_a_bad_document_value_writes_nothing(
    db: SharedAgentDB, value: Any, reason: str
) -> None:
    """Values PostgreSQL cannot hold (NUL in jsonb) or JSON cannot express are refused."""
    with pytest.raises(InvalidValueError, match=reason):
        await db.write("doc", value, "a")
    assert await db.read("doc") is None
    assert await db.keys() == []


async def test_an_escaped_backslash_u0000_is_text_not_nul(db: SharedAgentDB) -> None:
    """The six characters '\\u0000' are ordinary text and round trip through jsonb."""
    await db.write("doc", {"s": "\\u0000", "t": "\\\\u0000"}, "a")
    document = await db.read("doc")
    assert document is not None
    assert document.value == {"s": "\\u0000", "t": "\\\\u0000"}


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("expected_version", 2**31),
        ("expected_version", -1),
        ("expected_version", True),
        ("expected_version", "1"),
        ("fencing_token", 2**63),
        ("fencing_token", -1),
        ("fencing_token", 1.0),
    ],
)
async def test_out_of_range_versions_and_tokens_are_refused(
    db: SharedAgentDB, argument: str, value: Any
) -> None:
    """Versions are PostgreSQL integers and tokens bigints; anything else is refused."""
    with pytest.raises(InvalidValueError, match=argument):
        await db.write("doc", 1, "a", **{argument: value})
    assert await db.read("doc") is None


async def test_reading_an_impossible_version_or_prefix_is_refused(db: SharedAgentDB) -> None:
    """A version beyond int32 or a prefix with NUL is an error, not a driver crash."""
    with pytest.raises(InvalidValueError, match="version"):
        await db.read("doc", 2**40)
    with pytest.raises(InvalidValueError, match="NUL"):
        await db.keys("a\x00")


async def test_check_facts_refuses_what_store_facts_would_without_sending(
    redis_client: redis.Redis, namespace: str
) -> None:
    """A write-ahead log can check a batch first; a good batch passes, a bad one raises."""
    memory = RedisAgentMemory(redis_client, namespace)
    memory.check_facts("a", [NewFact("fine", "c", {"n": 1}, "k")])
    with pytest.raises(InvalidValueError, match="surrogate"):
        memory.check_facts("a", [NewFact("fine", "c"), NewFact("bad \ud800", "c")])
    with pytest.raises(InvalidIdError, match="agent_id"):
        memory.check_facts("", [])
    assert await memory.count_facts() == 0
