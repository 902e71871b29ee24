"""The durable writer keeps a sent write in its log until a replica of the primary holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from agentmem.devservers import EmbeddedRedis
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.durable import DurableWriter
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.wal import WriteAheadLog

pytestmark = pytest.mark.anyio


class EmbeddedReplica(EmbeddedRedis):
    """A standalone server replicating ``primary``."""

    name = "redis-replica"

    def __init__(self, data_dir: Path, primary: EmbeddedRedis) -> None:
        super().__init__(data_dir)
        self.primary = primary

    def _command(self) -> list[str]:
        return [*super()._command(), "--replicaof", "127.0.0.1", str(self.primary.port)]


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("primary")) as server:
        yield server


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, primary: EmbeddedRedis
) -> Iterator[EmbeddedReplica]:
    """The primary's replica; a test that stops it starts it again."""
    with EmbeddedReplica(tmp_path_factory.mktemp("replica"), primary) as server:
        yield server


@pytest.fixture
async def writer(
    primary: EmbeddedRedis, replica: EmbeddedReplica, tmp_path: Path, namespace: str
) -> AsyncIterator[DurableWriter]:
    """A durable writer on the primary, once its replica is in sync."""
    replica.start()  # a no-op unless an earlier test left it stopped
    client = redis.Redis.from_url(primary.url, socket_timeout=5)
    with anyio.fail_after(30):
        while True:
            info = await client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                break
            await anyio.sleep(0.05)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        yield DurableWriter(RedisAgentMemory(client, namespace), EventStore(client, namespace), wal)
    await client.aclose()


def facts(*texts: str) -> list[NewFact]:
    return [NewFact(text, "notes", {}, f"key-{text}") for text in texts]


def hello(n: int) -> AgentEvent:
    return AgentEvent(event_type="hello", agent_id="a-1", payload={"n": n})


async def link(primary: EmbeddedRedis, replica: EmbeddedReplica, *, attached: bool) -> None:
    """Attach the replica to the primary (or detach it), and wait until the primary sees it so."""
    async with redis.Redis.from_url(replica.url) as to_replica:
        if attached:
            await to_replica.replicaof("127.0.0.1", primary.port)
        else:
            await to_replica.replicaof("NO", "ONE")
    async with redis.Redis.from_url(primary.url) as to_primary:
        with anyio.fail_after(30):
            while True:
                info = await to_primary.info("replication")
                online = info.get("slave0", {}).get("state") == "online"
                if online if attached else not info.get("connected_slaves"):
                    return
                await anyio.sleep(0.05)


async def drained(writer: DurableWriter) -> None:
    """Flush until the log is empty (bounded)."""
    with anyio.fail_after(30):
        while True:
            if not await writer.flush():
                return
            await anyio.sleep(0.1)


async def test_a_write_leaves_the_log_once_the_replica_has_it(writer: DurableWriter) -> None:
    """With the replica in sync, sending and confirming happen in the same flush."""
    assert await writer.store_facts("a-1", facts("one", "two"))
    assert await writer.pending() == 0


async def test_sent_writes_stay_in_the_log_while_the_replica_is_down(
    writer: DurableWriter, replica: EmbeddedReplica
) -> None:
    """A write the primary acknowledged is kept until a replica holds it, then dropped; the
    writes logged after it wait behind it."""
    assert await writer.store_facts("a-1", facts("zero"))  # the writer learns of the replica
    replica.stop()
    assert await writer.store_facts("a-1", facts("one"))  # sent: the primary has it
    assert not await writer.store_facts("a-1", facts("two"))  # logged, held behind "one"
    assert await writer.pending() == 2
    assert await writer.unsent() == 1
    stored = [f.fact for f in await writer.memory.get_facts_by_category("notes")]
    assert stored == ["zero", "one"]
    replica.start()
    await drained(writer)
    stored = [f.fact for f in await writer.memory.get_facts_by_category("notes")]
    assert stored == ["zero", "one", "two"]


async def test_writes_a_failover_lost_are_sent_again_exactly_once(
    writer: DurableWriter, replica: EmbeddedReplica, primary: EmbeddedRedis, namespace: str
) -> None:
    """Writes missing from Redis after they were sent (as after a promotion) are resent."""
    assert await writer.store_facts("a-1", facts("zero"))
    replica.stop()
    assert await writer.store_facts("a-1", facts("one", "two"))
    client = redis.Redis.from_url(primary.url)
    await client.delete(*[key async for key in client.scan_iter(f"agentmem:{{{namespace}}}:*")])
    await client.aclose()  # the primary now lacks them, as a promoted stale replica would
    replica.start()
    await drained(writer)
    assert writer.resent == 1
    assert [f.fact for f in await writer.memory.get_facts_by_category("notes")] == ["one", "two"]


async def test_a_replica_that_attaches_after_the_first_send_is_waited_for(
    primary: EmbeddedRedis, replica: EmbeddedReplica, tmp_path: Path, namespace: str
) -> None:
    """A writer whose first send found no replica asks again at every confirmation: once a
    replica has attached, later writes stay in the log until a replica holds them."""
    replica.start()  # a no-op unless an earlier test left it stopped
    await link(primary, replica, attached=False)
    client = redis.Redis.from_url(primary.url, socket_timeout=5)
    try:
        async with WriteAheadLog(tmp_path / "wal.db") as wal:
            memory, events = RedisAgentMemory(client, namespace), EventStore(client, namespace)
            writer = DurableWriter(memory, events, wal)
            assert await writer.store_facts("a-1", facts("alone"))
            assert await writer.pending() == 0  # no replica: the primary's word is all there is
            await link(primary, replica, attached=True)
            assert await writer.store_facts("a-1", facts("replicated"))
            await drained(writer)  # the replica acknowledges it (at once, unless loaded)
            await link(primary, replica, attached=False)  # a replica resyncing, say
            assert await writer.store_facts("a-1", facts("waiting"))
            assert await writer.pending() == 1  # kept: no replica holds it yet
            await link(primary, replica, attached=True)
            await drained(writer)
    finally:
        await link(primary, replica, attached=True)
        await client.aclose()


async def test_one_writers_publishes_stay_in_order_through_a_failover_that_lost_one(
    writer: DurableWriter, replica: EmbeddedReplica, primary: EmbeddedRedis
) -> None:
    """An event the failover lost goes out again before anything logged after it: the
    stream holds the writer's events in the order it logged them."""
    events = writer.events
    assert await writer.publish(hello(1), idempotency_key="e1")
    replica.stop()
    assert await writer.publish(hello(2), idempotency_key="e2")  # on the primary alone
    e3_sent_at_once = await writer.publish(hello(3), idempotency_key="e3")
    async with redis.Redis.from_url(primary.url) as client:  # a failover that lost e2
        publish_keys = events.keys.publish_keys(events.stream)
        lost_id = await client.hget(publish_keys, "e2")
        assert lost_id is not None
        await client.xdel(events.stream_key, lost_id)
        await client.hdel(publish_keys, "e2")
    replica.start()
    await drained(writer)
    assert [e.payload["n"] for e in await events.read_events()] == [1, 2, 3]
    assert writer.resent == 1
    assert not e3_sent_at_once  # it waited behind e2, which no replica held yet
