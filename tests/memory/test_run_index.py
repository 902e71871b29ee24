"""The run index lists runs newest first, and a run's end replaces its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmem.memory import RunEntry, RunIndex
from agentmem.memory.connections import RedisClient
from agentmem.memory.namespace import drop_redis_namespace

pytestmark = pytest.mark.anyio


async def test_runs_are_listed_newest_first_and_their_end_replaces_their_start(
    redis_client: RedisClient, namespace: str
) -> None:
    """Two runs: the newer first; ending one updates its entry; removing it drops it."""
    index = RunIndex(redis_client)
    now = datetime.now(UTC) + timedelta(days=3650)  # newer than any other test's runs
    older = RunEntry(run_id=f"{namespace}-a", topic="a", started_at=now)
    newer = RunEntry(run_id=f"{namespace}:b", topic="b", started_at=now + timedelta(seconds=1))
    await index.put(older)
    await index.put(newer)
    await index.put(older.model_copy(update={"state": "completed", "ended_at": now}))

    listed = await index.newest(2)

    assert [e.run_id for e in listed] == [newer.run_id, older.run_id]
    assert listed[1].state == "completed"
    assert listed[1].seconds == 0
    await drop_redis_namespace(redis_client, newer.run_id)  # a run's own data, not the index
    assert await index.get(newer.run_id) == newer
    await index.remove(newer.run_id)
    await index.remove(older.run_id)
    assert await index.get(newer.run_id) is None


async def test_a_run_ends_once_and_a_second_end_gets_the_first(
    redis_client: RedisClient, namespace: str
) -> None:
    """conclude ends a running run; a second, different end is not written and answers the
    first, which stays in the index."""
    index = RunIndex(redis_client)
    now = datetime.now(UTC)
    running = RunEntry(run_id=f"{namespace}-c", topic="c", started_at=now, tenant=f"t-{namespace}")
    await index.put(running)
    failed = running.model_copy(update={"state": "failed", "error": "timed out", "ended_at": now})
    completed = running.model_copy(update={"state": "completed", "ended_at": now})

    assert await index.conclude(failed) == failed
    assert await index.conclude(completed) == failed
    assert await index.get(running.run_id) == failed
    assert [e.run_id for e in await index.newest(1, tenant=f"t-{namespace}")] == [running.run_id]
    await index.remove(running.run_id)
