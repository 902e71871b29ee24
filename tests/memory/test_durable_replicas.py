"""The durable writer keeps a sent write in its log until a replica of the primary holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from devservers import EmbeddedRedis
from memory.agent_memory import RedisAgentMemory
from memory.durable import DurableWriter
from memory.events import EventStore
from memory.facts import NewFact
from memory.wal import WriteAheadLog

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
    """A write the primary acknowledged is kept until a replica holds it, then dropped."""
    assert await writer.store_facts("a-1", facts("zero"))  # the writer learns of the replica
    replica.stop()
    assert await writer.store_facts("a-1", facts("one"))  # sent: the primary has it
    assert await writer.store_facts("a-1", facts("two"))  # later writes still go out
    assert await writer.pending() == 2
    assert await writer.unsent() == 0
    stored = [f.fact for f in await writer.memory.get_facts_by_category("notes")]
    assert stored == ["zero", "one", "two"]
    replica.start()
    await drained(writer)


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
