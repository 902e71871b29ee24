"""Writes through the write-ahead log: kept while Redis is away, sent once when it is back."""

from __future__ import annotations

import contextlib
import sqlite3
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from agentmem.devservers import EmbeddedRedis
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import RedisClient
from agentmem.memory.durable import DurableWriter
from agentmem.memory.errors import InvalidIdError, WalFullError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.wal import WriteAheadLog
from tests.memory.small_disk import fill, small_disk

pytestmark = pytest.mark.anyio


def facts(*texts: str) -> list[NewFact]:
    return [NewFact(text, "notes", {"n": i}, f"key-{text}") for i, text in enumerate(texts)]


def hello(n: int) -> AgentEvent:
    return AgentEvent(event_type="hello", agent_id="a-1", payload={"n": n})


async def test_writes_made_while_redis_is_down_arrive_once_in_order_when_it_is_back(
    tmp_path: Path, namespace: str
) -> None:
    """Stop Redis, write, restart it, flush: every write lands, in order, exactly once."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
        memory, events = RedisAgentMemory(client, namespace), EventStore(client, namespace)
        async with WriteAheadLog(tmp_path / "wal.db") as wal:
            writer = DurableWriter(memory, events, wal)
            assert await writer.store_facts("a-1", facts("before"))

            server.stop()
            assert not await writer.store_facts("a-1", facts("during-1", "during-2"))
            assert not await writer.publish(hello(1), idempotency_key="hello-1")
            assert not await writer.store_facts("a-1", facts("before"))  # a retry of a sent one
            assert await writer.pending() == 3

            server.start()  # same data directory, append-only file: data survives
            assert await writer.flush() == 0
            assert await writer.flush() == 0

        stored = await memory.get_facts_by_category("notes")
        assert [f.fact for f in stored] == ["before", "during-1", "during-2"]
        assert [e.payload for e in await events.read_events()] == [{"n": 1}]
        await client.aclose()
    finally:
        server.stop()


async def test_the_log_outlives_the_agent_and_is_sent_by_its_next_life(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """Entries left in the log by a crashed agent are sent by the writer that reopens it."""
    down = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        first_life = DurableWriter(RedisAgentMemory(down), EventStore(down, namespace), wal)
        await first_life.store_facts("a-1", facts("kept"))
        await first_life.publish(hello(2), idempotency_key="hello-2")
    await down.aclose()

    memory = RedisAgentMemory(redis_client, namespace)
    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        assert await DurableWriter(memory, events, wal).flush() == 0
    assert [f.fact for f in await memory.get_facts_by_category("notes")] == ["kept"]
    assert len(await events.read_events()) == 1


async def test_facts_without_an_idempotency_key_are_refused(
    tmp_path: Path, redis_client: redis.Redis, namespace: str
) -> None:
    """A write that could be applied twice on replay is not accepted into the log."""
    memory, events = RedisAgentMemory(redis_client, namespace), EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(memory, events, wal)
        with pytest.raises(InvalidIdError, match="idempotency key"):
            await writer.store_facts("a-1", [NewFact("no key", "notes")])
        assert await writer.pending() == 0


async def test_a_batch_of_handoffs_is_published_once_each_in_order_even_when_sent_again(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """publish_many logs the batch together and publishes each event once, in order; the same
    batch published again (a redelivered handler) adds nothing; a bad event refuses the whole
    batch before any of it is logged."""
    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        batch = [(hello(n), f"hello-{n}") for n in range(5)]
        assert await writer.publish_many(batch)
        assert await writer.publish_many(batch)
        with pytest.raises(InvalidIdError):
            await writer.publish_many([(hello(9), "fine"), (hello(10), "")])
        assert await writer.pending() == 0
    assert [e.payload["n"] for e in await events.read_events()] == [0, 1, 2, 3, 4]


async def test_a_batch_made_while_redis_is_down_is_sent_when_the_log_is_reopened(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """publish_many returns False while Redis is away; the next life sends the whole batch."""
    down = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        first_life = DurableWriter(RedisAgentMemory(down), EventStore(down, namespace), wal)
        assert not await first_life.publish_many([(hello(n), f"h-{n}") for n in range(3)])
        assert await first_life.pending() == 3
    await down.aclose()
    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        assert await writer.flush() == 0
    assert [e.payload["n"] for e in await events.read_events()] == [0, 1, 2]


async def test_a_record_logged_for_later_goes_out_before_the_next_publish(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """publish_later returns once the event is on disk; nothing reaches Redis until the writer
    sends, and the next publish sends it first, so the stream keeps the order of the log."""
    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        await writer.publish_later(hello(1), idempotency_key="later-1")
        assert await writer.unsent() == 1
        assert await events.read_events() == []
        assert await writer.publish(hello(2), idempotency_key="now-2")
        assert await writer.pending() == 0
    assert [e.payload["n"] for e in await events.read_events()] == [1, 2]


async def test_the_running_writer_sends_a_record_logged_for_later_by_itself(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """With run() going, a record logged for later reaches Redis without another publish."""
    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(tmp_path / "wal.db") as wal, anyio.create_task_group() as tg:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        tg.start_soon(writer.run)
        await writer.publish_later(hello(3), idempotency_key="later-3")
        with anyio.fail_after(10):
            async with aclosing(events.subscribe("0-0", block_ms=100)) as log:
                seen = await anext(log)
        tg.cancel_scope.cancel()
    assert seen.payload == {"n": 3}
    assert [e.payload["n"] for e in await events.read_events()] == [3]


async def test_an_unreadable_entry_is_set_aside_and_the_rest_are_sent_in_order(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """Garbage in one row and a well-formed row that is no valid event do not stop the
    writer: both are set aside, the others are published in log order, and the log empties."""
    path = tmp_path / "wal.db"
    down = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    async with WriteAheadLog(path) as wal:
        first_life = DurableWriter(RedisAgentMemory(down), EventStore(down, namespace), wal)
        assert not await first_life.publish_many([(hello(n), f"h-{n}") for n in range(4)])
        [_, e1, e2, _] = await wal.pending()
    await down.aclose()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE wal SET args = CAST(? AS TEXT) WHERE seq = ?", (b"\xff\x00", e1.seq))
        db.execute("UPDATE wal SET args = ? WHERE seq = ?", ('{"event": {}}', e2.seq))

    events = EventStore(redis_client, namespace)
    async with WriteAheadLog(path) as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        assert await writer.flush() == 0
    assert [e.payload["n"] for e in await events.read_events()] == [0, 3]
    with contextlib.closing(sqlite3.connect(path)) as db:
        aside = [seq for (seq,) in db.execute("SELECT seq FROM quarantine ORDER BY seq")]
    assert aside == [e1.seq, e2.seq]


async def test_a_publish_the_full_disk_cannot_log_is_refused_and_never_sent(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """On a disk that is full, publish raises WalFullError and the event does not reach
    Redis: nothing is acknowledged that was not logged."""
    events = EventStore(redis_client, namespace)
    with small_disk(tmp_path / "disk") as disk:
        async with WriteAheadLog(disk / "wal.db") as wal:
            writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
            assert await writer.publish(hello(1), idempotency_key="fits")
            await fill(wal)
            with pytest.raises(WalFullError, match="nothing was logged"):
                await writer.publish(hello(2), idempotency_key="does-not-fit")
    assert [e.payload["n"] for e in await events.read_events()] == [1]
