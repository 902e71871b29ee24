"""A handoff's ticket is never ahead of the handoff: tickets go out once it is in the stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as redis

from agentmem.memory import EventStore, RedisAgentMemory, WriteAheadLog
from agentmem.memory.connections import RedisClient
from agentmem.memory.keys import work_lane
from agentmem.memory.work_queue import WorkQueue
from agentmem.protocol.events import RUN_STREAM, EventType, SectionAssigned, SectionPlan, new_event
from agentmem.service.routes import POOL_ROUTES, TicketingWriter

pytestmark = pytest.mark.anyio


def _writer(
    client: RedisClient, queues: dict[str, WorkQueue], wal: WriteAheadLog, run_id: str
) -> TicketingWriter:
    events = EventStore(client, run_id, RUN_STREAM, routes=POOL_ROUTES)
    return TicketingWriter(RedisAgentMemory(client, run_id), events, wal, queues, "research-t")


async def test_a_handoff_kept_in_the_local_log_is_ticketed_only_once_it_reaches_the_stream(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """Published while the run's Redis is unreachable, a handoff gets no ticket; the flush
    that sends it (here a restarted worker's, from the same log) tickets it."""
    queue = WorkQueue(redis_client, "writer", 1)
    queues = {"writer": queue}
    lane = work_lane("writer", 0, "default")
    before = await redis_client.xlen(lane)
    assigned = new_event(
        EventType.SECTION_ASSIGNED,
        "research-t",
        SectionAssigned(section=SectionPlan(section_id="s1", title="One")),
    )
    down = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        cut_off = _writer(down, queues, wal, namespace)
        assert not await cut_off.publish(assigned, idempotency_key="assign-s1")
        assert await redis_client.xlen(lane) == before  # no ticket for what is not there
    await down.aclose()

    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        assert await _writer(redis_client, queues, wal, namespace).flush() == 0
    stream = EventStore(redis_client, namespace, RUN_STREAM, routes=POOL_ROUTES)
    assert [e.event_type for e in await stream.read_events()] == [EventType.SECTION_ASSIGNED]
    assert await redis_client.xlen(lane) == before + 1
