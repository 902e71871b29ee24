"""Fuzzing every store's writes: each call succeeds and reads back, or raises our error.

Hostile input: any unicode, lone surrogates, NUL and control characters, glob and key
characters, deep nesting, values over their caps, NaN, huge integers and objects JSON cannot
hold. For every call the test asserts that it either succeeds and the value reads back equal,
or raises an :class:`~memory.errors.AgentMemoryError` subclass and leaves nothing behind. How
many examples were accepted and rejected (per error class) is logged at the end of the module
(``pytest tests/memory/test_fuzz.py --log-cli-level=INFO``).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.errors import AgentMemoryError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.keys import encode_part
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio
logger = logging.getLogger(__name__)

T = TypeVar("T")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one client per test; a namespace per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
OUTCOMES: defaultdict[str, Counter[str]] = defaultdict(Counter)
_examples = itertools.count()

MB = 1024 * 1024
SPECIAL = [
    *"\x00\x01\x1b\x7f\x85\t\n\r :{}*?[]\\%/.~\u00a0\u2028\u200b\ufeff",
    "\ud800",
    "\udfff",
    "..",
    "\\u0000",
    "é",
    "東",
    "\U0001f600",
]
hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates included
    st.lists(st.sampled_from(SPECIAL) | st.characters(), max_size=12).map("".join),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=250, max_size=260),
)
valid_id = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` five times in six, else ``rare`` (calls taking several ids still succeed)."""
    return st.integers(0, 5).flatmap(lambda n: rare if n == 0 else common)


hostile_id = mostly(valid_id, hostile_text | st.sampled_from([None, 42, b"bytes", ["list"]]))


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": value} if levels % 2 else [value]
    return value


HUGE = ["x" * (MB + 1), {"big": "é" * (MB // 2 + 1)}, ["y" * 1000] * 1100]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),  # NaN and infinities included
    hostile_text,
)


class HugeInt(int):
    """An integer too long for ``str()`` (and for JSON), with a repr that still prints."""

    def __repr__(self) -> str:
        return "HugeInt(10**5000)"


not_json = st.sampled_from([object(), b"bytes", {1, 2}, datetime.now(UTC), HugeInt(10**5000)])
json_like = st.recursive(
    scalars | not_json,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(hostile_text | st.integers(), kids, max_size=4)
    ),
    max_leaves=12,
)
hostile_value = json_like | st.integers(1, 1500).map(deep) | st.sampled_from(HUGE)
hostile_mapping = st.one_of(
    st.none(),
    st.dictionaries(hostile_text, hostile_value, max_size=4),
    st.dictionaries(st.text(max_size=5), json_like, max_size=3),
    hostile_value,  # not a mapping, mostly
)
text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)  # NUL and controls too
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=10,
)
# Mostly values a store should accept, so that reading back is exercised as much as refusing.
metadata = mostly(st.none() | st.dictionaries(text, plain_json, max_size=4), hostile_mapping)
payloads = mostly(st.dictionaries(text, plain_json, max_size=4), hostile_mapping)
values = mostly(plain_json, hostile_value)
ttls = st.one_of(
    st.floats(min_value=1, max_value=60),
    st.floats(),
    st.integers(min_value=-5, max_value=2**70),
    st.sampled_from([None, "10", True]),
)


def namespace_for(base: str) -> str:
    """A namespace of its own for each example, so examples never see each other's data."""
    return f"{base}-fuzz-{next(_examples)}"


async def attempt(store: str, call: Awaitable[T]) -> T | None:
    """The call's result, or None if it raised one of our errors (anything else escapes)."""
    try:
        result = await call
    except AgentMemoryError as exc:
        outcome = f"rejected: {type(exc).__name__}"
        OUTCOMES[store][outcome] += 1
        event(outcome)
        return None
    OUTCOMES[store]["accepted"] += 1
    event("accepted")
    return result


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON; jsonb may print a float such as 1e300 as an integer."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


async def keys_of(client: redis.Redis, namespace: str) -> list[bytes]:
    prefix = f"agentmem:{{{encode_part(namespace)}}}:".encode()
    return [
        k async for k in client.scan_iter(match=b"agentmem:*", count=1000) if k.startswith(prefix)
    ]


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    for store, counts in sorted(OUTCOMES.items()):
        logger.info("fuzz %s: %d examples, %s", store, sum(counts.values()), dict(counts))


@pytest.fixture
async def migrated(pg_pool: asyncpg.Pool, namespace: str) -> asyncpg.Pool:
    """The pool, with the documents schema in place."""
    await SharedAgentDB(pg_pool, namespace).migrate()
    return pg_pool


@FUZZ
@given(
    agent_id=hostile_id,
    facts=st.lists(
        st.builds(
            NewFact,
            fact=mostly(text, hostile_text | st.sampled_from([42, None, "x" * (MB + 1)])),
            category=hostile_id,
            metadata=metadata,
            idempotency_key=st.none() | hostile_id,
        ),
        min_size=1,
        max_size=3,
    ),
)
async def test_store_facts_stores_all_and_reads_back_or_raises_ours_and_stores_none(
    redis_client: redis.Redis, namespace: str, agent_id: Any, facts: list[NewFact]
) -> None:
    """store_fact / store_facts never raise another error and never store half a batch."""
    ns = namespace_for(namespace)
    memory = RedisAgentMemory(redis_client, ns)
    if len(facts) == 1:
        new = facts[0]
        call = memory.store_fact(
            agent_id, new.fact, new.category, new.metadata, idempotency_key=new.idempotency_key
        )
        one = await attempt("store_fact", call)
        ids = None if one is None else [one]
    else:
        ids = await attempt("store_facts", memory.store_facts(agent_id, facts))
    if ids is None:
        assert await keys_of(redis_client, ns) == []
        return
    first: dict[int, NewFact] = {}
    for fact_id, new in zip(ids, facts, strict=True):
        first.setdefault(fact_id, new)  # a repeated idempotency key returns the first id
    for fact in await memory.get_facts(list(first)):
        new = first[fact.id]
        assert (fact.fact, fact.category, fact.agent_id) == (new.fact, new.category, agent_id)
        assert fact.metadata == dict(new.metadata or {})


@FUZZ
@given(
    event_type=mostly(valid_id, hostile_text | st.just("x" * 201)),
    agent_id=hostile_id,
    payload=payloads,
    idempotency_key=st.none() | hostile_id,
)
async def test_publish_appends_the_event_or_raises_ours_and_appends_nothing(
    redis_client: redis.Redis,
    namespace: str,
    event_type: Any,
    agent_id: Any,
    payload: Any,
    idempotency_key: Any,
) -> None:
    """EventStore.publish never raises another error; what it accepts reads back equal.

    An event pydantic refuses to build is counted apart, then published unvalidated
    (``model_construct``), so publish's own checks are fuzzed as well.
    """
    ns = namespace_for(namespace)
    events = EventStore(redis_client, ns, "run")
    fields = {"event_type": event_type, "agent_id": agent_id, "payload": payload}
    try:
        new = AgentEvent(**fields)
    except ValidationError:
        OUTCOMES["AgentEvent()"]["refused by pydantic"] += 1
        new = AgentEvent.model_construct(**fields)
    entry_id = await attempt("publish", events.publish(new, idempotency_key=idempotency_key))
    if entry_id is None:
        assert await keys_of(redis_client, ns) == []
        return
    [read] = await events.read_events()
    assert read.event_id == entry_id
    assert (read.event_type, read.agent_id, read.payload) == (
        new.event_type,  # as the model holds them: pydantic turns b"x" into "x"
        new.agent_id,
        new.payload,
    )


@FUZZ
@given(
    key=hostile_id,
    value=values,
    agent_id=hostile_id,
    expected_version=st.none() | st.just(0) | st.integers(min_value=-(2**70), max_value=2**70),
    fencing_token=st.none() | st.integers(min_value=-(2**70), max_value=2**70),
)
async def test_write_appends_a_version_or_raises_ours_and_writes_nothing(
    migrated: asyncpg.Pool,
    namespace: str,
    key: Any,
    value: Any,
    agent_id: Any,
    expected_version: Any,
    fencing_token: Any,
) -> None:
    """SharedAgentDB.write never raises another error; what it accepts reads back equal."""
    ns = namespace_for(namespace)
    db = SharedAgentDB(migrated, ns)
    call = db.write(key, value, agent_id, expected_version, fencing_token=fencing_token)
    written = await attempt("write", call)
    if written is None:
        rows = await migrated.fetchval("SELECT count(*) FROM documents WHERE namespace = $1", ns)
        assert rows == 0
        return
    document = await db.read(key)
    assert document is not None
    assert (document.version, document.agent_id) == (1, agent_id)
    assert same_json(document.value, value)


@FUZZ
@given(resource=hostile_id, agent_id=hostile_id, ttl=ttls)
async def test_acquire_lock_grants_a_lease_or_raises_ours_and_locks_nothing(
    redis_client: redis.Redis,
    migrated: asyncpg.Pool,
    namespace: str,
    resource: Any,
    agent_id: Any,
    ttl: Any,
) -> None:
    """acquire_lock never raises another error; a granted lease holds its resource."""
    ns = namespace_for(namespace)
    db = SharedAgentDB(migrated, ns)
    memory = RedisAgentMemory(redis_client, ns, fences=db.issue_fencing_token)
    lease = await attempt("acquire_lock", memory.acquire_lock(resource, agent_id, ttl))
    if lease is None:
        assert await keys_of(redis_client, ns) == []
        return
    assert (lease.resource, lease.agent_id) == (resource, agent_id)
    assert isinstance(lease.fencing_token, int)
    assert lease.fencing_token > 0
    if ttl >= 1:
        assert await memory.acquire_lock(resource, "someone else", 1) is None
        assert await memory.release_lock(lease)


@FUZZ
@given(
    agent_id=hostile_id,
    status=mostly(text, hostile_text | st.sampled_from([1, None, "s" * 70_000])),
    detail=mostly(st.text(), hostile_text),
    ttl=ttls,
)
async def test_set_agent_status_publishes_or_raises_ours_and_sets_nothing(
    redis_client: redis.Redis, namespace: str, agent_id: Any, status: Any, detail: Any, ttl: Any
) -> None:
    """set_agent_status never raises another error; a status set reads back and is listed."""
    ns = namespace_for(namespace)
    memory = RedisAgentMemory(redis_client, ns)
    written = await attempt(
        "set_agent_status", memory.set_agent_status(agent_id, status, detail, ttl)
    )
    if written is None:
        assert await keys_of(redis_client, ns) == []
        return
    assert (written.agent_id, written.status, written.detail) == (agent_id, status, detail)
    if ttl >= 1:
        assert await memory.get_agent_status(agent_id) == written
        assert [s.agent_id for s in await memory.list_live_agents()] == [agent_id]
