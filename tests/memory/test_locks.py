"""Locks: mutual exclusion, fencing tokens, safe release, renewal and loss detection."""

from __future__ import annotations

import itertools

import anyio
import asyncpg
import pytest
import redis.asyncio as redis

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.errors import LockLostError, LockTimeoutError
from agentmem.memory.shared_db import SharedAgentDB
from tests.conditions import eventually, until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def memory(
    redis_client: redis.Redis, pg_pool: asyncpg.Pool, namespace: str
) -> RedisAgentMemory:
    """Locks whose fencing tokens come from PostgreSQL, as :func:`open_memory` wires them."""
    db = SharedAgentDB(pg_pool, namespace)
    await db.migrate()
    return RedisAgentMemory(redis_client, namespace, fences=db.issue_fencing_token)


async def test_twenty_contenders_never_hold_the_lock_at_the_same_time(
    memory: RedisAgentMemory,
) -> None:
    """Recorded hold intervals of 20 tasks contending for one lock never overlap."""
    intervals: list[tuple[float, float, int]] = []

    async def contender(n: int) -> None:
        async with memory.lock("doc", f"agent-{n}", ttl_seconds=5, timeout=30) as held:
            start = anyio.current_time()
            await anyio.sleep(0.01)
            intervals.append((start, anyio.current_time(), held.fencing_token or 0))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(contender, n)

    intervals.sort()
    assert len(intervals) == 20
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start
    tokens = [token for *_, token in intervals]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 20


async def test_fencing_tokens_increase_with_every_grant(memory: RedisAgentMemory) -> None:
    """Each grant of a resource carries a larger fencing token than the one before."""
    tokens = []
    for _ in range(3):
        lease = await memory.acquire_lock("doc", "a-1")
        assert lease
        assert lease.fencing_token is not None
        tokens.append(lease.fencing_token)
        assert await memory.release_lock(lease)

    assert tokens == sorted(set(tokens))


async def test_a_held_lock_is_not_granted_again(memory: RedisAgentMemory) -> None:
    """A second acquire of a held lock returns a falsy result."""
    assert await memory.acquire_lock("doc", "a-1")
    assert not await memory.acquire_lock("doc", "a-2")


async def test_a_non_holder_cannot_release_or_extend_the_lock(memory: RedisAgentMemory) -> None:
    """Releasing with an expired lease leaves the new holder's lock in place."""
    old = await memory.acquire_lock("doc", "a-1", ttl_seconds=0.1)
    assert old
    new = await eventually(lambda: memory.acquire_lock("doc", "a-2", ttl_seconds=10))
    assert new

    assert not await memory.release_lock(old)
    assert not await memory.extend_lock(old)
    assert not await memory.acquire_lock("doc", "a-3")
    assert await memory.release_lock(new)


async def test_extending_a_lease_keeps_the_lock_past_its_first_ttl(
    memory: RedisAgentMemory,
) -> None:
    """An extended lease is still held after its original TTL has passed."""
    lease = await memory.acquire_lock("doc", "a-1", ttl_seconds=0.3)
    assert lease
    assert await memory.extend_lock(lease, ttl_seconds=5)
    await anyio.sleep(0.4)

    assert not await memory.acquire_lock("doc", "a-2")


async def test_the_lock_block_renews_a_lease_longer_than_its_ttl(memory: RedisAgentMemory) -> None:
    """Held in ``async with``, a lease outlives its TTL because it is renewed."""
    async with memory.lock("doc", "a-1", ttl_seconds=0.3) as held:
        await anyio.sleep(0.8)
        assert not await memory.acquire_lock("doc", "a-2")
        held.check()

    assert await memory.acquire_lock("doc", "a-2")


async def test_the_lock_block_reports_a_lease_taken_behind_its_back(
    memory: RedisAgentMemory, redis_client: redis.Redis
) -> None:
    """When the lock is deleted and re-granted, the holder learns it lost the lease."""
    async with memory.lock("doc", "a-1", ttl_seconds=0.3) as held:
        await redis_client.delete(memory.keys.lock("doc"))
        thief = await memory.acquire_lock("doc", "a-2", ttl_seconds=10)
        assert thief
        assert thief.fencing_token is not None
        assert held.fencing_token is not None
        assert thief.fencing_token > held.fencing_token
        await until(lambda: held.lost)  # the next renewal finds the thief's lease
        with pytest.raises(LockLostError, match="was lost"):
            held.check()

    assert not await memory.acquire_lock("doc", "a-3")  # the thief's lock survived the exit


async def test_waiting_for_a_held_lock_times_out_naming_the_holder(
    memory: RedisAgentMemory,
) -> None:
    """``lock`` gives up after its timeout with an error that names the holder."""
    assert await memory.acquire_lock("doc", "holder-1", ttl_seconds=10)

    with pytest.raises(LockTimeoutError, match="holder-1"):
        async with memory.lock("doc", "a-2", timeout=0.2):
            pass


async def test_an_error_inside_the_lock_block_propagates_as_itself(
    memory: RedisAgentMemory,
) -> None:
    """The block's own exception comes out unwrapped (no exception group), and the lock is freed."""

    async def fail_while_holding() -> None:
        async with memory.lock("doc", "a-1", ttl_seconds=5):
            msg = "boom"
            raise KeyError(msg)

    with pytest.raises(KeyError, match="boom"):
        await fail_while_holding()

    assert await memory.acquire_lock("doc", "a-2")


async def test_a_block_cancelled_while_renewing_releases_the_lock(
    memory: RedisAgentMemory, redis_client: redis.Redis
) -> None:
    """Cancelled from outside after renewals began, the block frees the lock at once."""
    with anyio.move_on_after(0.5) as scope:
        async with memory.lock("doc", "a-1", ttl_seconds=0.3):
            await anyio.sleep(5)
    assert scope.cancelled_caught

    assert await redis_client.get(memory.keys.lock("doc")) is None
    assert await memory.acquire_lock("doc", "a-2")


async def test_a_lease_lost_while_held_still_ends_the_block_cleanly(
    memory: RedisAgentMemory, redis_client: redis.Redis
) -> None:
    """A renewal that finds the lease gone marks it lost; leaving the block raises nothing."""
    async with memory.lock("doc", "a-1", ttl_seconds=0.3) as held:
        await redis_client.delete(memory.keys.lock("doc"))
        await until(lambda: held.lost)  # the first renewal finds the lease gone

    assert await memory.acquire_lock("doc", "a-2")
