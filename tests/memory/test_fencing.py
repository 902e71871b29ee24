"""Fencing tokens from PostgreSQL: they keep increasing whatever Redis loses; acquires that are
retried or cancelled leave no orphan lease; lease deadlines follow the deadline clock."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest
import redis.asyncio as redis

from agentmem.memory import _clock
from agentmem.memory._scripts import LuaScript
from agentmem.memory.errors import (
    LockLostError,
    LockTimeoutError,
    ServerUnavailableError,
    StaleFencingTokenError,
    UnfencedWriteError,
)
from agentmem.memory.keys import Keyspace
from agentmem.memory.locks import _ACQUIRE, LockManager, default_wait
from agentmem.memory.namespace import drop_redis_namespace
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(pg_pool: asyncpg.Pool, namespace: str) -> SharedAgentDB:
    db = SharedAgentDB(pg_pool, namespace)
    await db.migrate()
    return db


def locks(client: redis.Redis, db: SharedAgentDB) -> LockManager:
    """A lock manager of its own (another client's), fenced by ``db``."""
    return LockManager(client, Keyspace(db.namespace), fences=db.issue_fencing_token)


async def test_tokens_keep_increasing_when_redis_loses_the_lock_and_its_counter(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """The audit's case: Redis forgets the lease; the second grant gets a newer token, and the
    first holder's writes are refused once the second has written."""
    first = await locks(redis_client, db).acquire_lock("doc", "holder-1", ttl_seconds=30)
    assert first is not None
    assert first.fencing_token is not None
    await db.write("doc", "by the first holder", "holder-1", fencing_token=first.fencing_token)

    # Redis loses its last writes (everysec fsync and an OS crash, or a failover): the lock
    # key, and everything else of the namespace, is gone while the first holder still holds.
    await drop_redis_namespace(redis_client, db.namespace)
    second = await locks(redis_client, db).acquire_lock("doc", "holder-2", ttl_seconds=30)
    assert second is not None
    assert second.fencing_token is not None
    assert second.fencing_token > first.fencing_token

    await db.write("doc", "by the second holder", "holder-2", fencing_token=second.fencing_token)
    with pytest.raises(StaleFencingTokenError, match="is older than"):
        await db.write("doc", "late", "holder-1", fencing_token=first.fencing_token)
    with pytest.raises(StaleFencingTokenError):
        await db.update("doc", lambda _: "late", "holder-1", fencing_token=first.fencing_token)
    with pytest.raises(UnfencedWriteError, match="no fencing token"):
        await db.write("doc", "unlocked", "someone")
    with pytest.raises(UnfencedWriteError):
        await db.update("doc", lambda _: "unlocked", "someone")
    assert [d.value for d in await db.history("doc")] == [
        "by the first holder",
        "by the second holder",
    ]


async def test_a_holder_may_write_again_with_its_own_token(db: SharedAgentDB) -> None:
    """A token equal to the highest (the same grant: tokens are unique) is accepted again."""
    token = await db.issue_fencing_token("doc")
    await db.write("doc", 1, "holder-1", fencing_token=token)
    await db.write("doc", 2, "holder-1", expected_version=1, fencing_token=token)
    assert await db.issue_fencing_token("doc") > token
    assert await db.issue_fencing_token("other") > token  # unique across resources too


async def test_keys_never_fenced_still_accept_writes_without_a_token(db: SharedAgentDB) -> None:
    """Only a key that has seen a token refuses token-less writes."""
    await db.write("notes", 1, "a")
    await db.update("notes", lambda n: n + 1, "b")
    assert (await db.read("notes")) is not None


async def test_a_retried_acquire_is_granted_its_own_lease(
    redis_client: redis.Redis, namespace: str
) -> None:
    """The acquire script run twice with one lease value (a reply lost, the command retried)
    reports the grant both times; another value is refused."""
    acquire = LuaScript(redis_client, _ACQUIRE)
    key = Keyspace(namespace).lock("doc")

    first = await acquire([key], ["holder-1/abc", 10_000])
    retried = await acquire([key], ["holder-1/abc", 10_000])
    other = await acquire([key], ["holder-2/def", 10_000])

    assert int(first[0]) == 1
    assert int(retried[0]) == 1
    assert int(other[0]) == 0
    assert await redis_client.get(key) in {b"holder-1/abc", "holder-1/abc"}


async def test_an_acquire_cancelled_while_its_token_is_issued_leaves_no_lease(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """Cancelled after Redis granted the lease (the token step in flight), the acquire
    releases it: the lock is free at once, not after its TTL."""
    scope = anyio.CancelScope()

    async def stalled(resource: str) -> int:
        scope.cancel()  # fires while the acquire waits for the token
        await anyio.sleep_forever()
        raise AssertionError

    manager = LockManager(redis_client, Keyspace(db.namespace), fences=stalled)
    with scope:
        await manager.acquire_lock("doc", "holder-1", ttl_seconds=60)
    assert scope.cancelled_caught
    assert await redis_client.exists(Keyspace(db.namespace).lock("doc")) == 0


async def test_a_wait_that_times_out_during_a_grant_leaves_no_lease(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """lock()'s wait ends while its attempt holds a fresh grant: that grant is released."""
    called = anyio.Event()

    async def stalled(resource: str) -> int:
        called.set()
        await anyio.sleep_forever()
        raise AssertionError

    keys = Keyspace(db.namespace)
    assert await locks(redis_client, db).acquire_lock("doc", "crashed-1", ttl_seconds=0.3)
    manager = LockManager(redis_client, keys, fences=stalled)
    with pytest.raises(LockTimeoutError):
        async with manager.lock("doc", "holder-1", ttl_seconds=60, timeout=2):
            pass
    assert called.is_set()  # the wait got the lease from Redis, then timed out
    assert await redis_client.exists(keys.lock("doc")) == 0


async def test_no_lease_is_granted_when_postgres_cannot_issue_its_token(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """Fail closed: a token source that fails releases the lease and raises."""

    async def down(resource: str) -> int:
        msg = "PostgreSQL is unavailable: test"
        raise ServerUnavailableError(msg)

    keys = Keyspace(db.namespace)
    with pytest.raises(ServerUnavailableError):
        await LockManager(redis_client, keys, fences=down).acquire_lock("doc", "holder-1")
    assert await redis_client.exists(keys.lock("doc")) == 0


async def test_a_token_issued_after_the_lease_ran_out_is_not_a_grant(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """A token that arrives after the lease's local deadline (a stall) is refused."""
    skipped = 0.0

    def clock() -> float:
        return _clock.now() + skipped

    async def slow(resource: str) -> int:
        nonlocal skipped
        skipped = 120.0  # the machine slept (or the process stalled) past the lease
        return await db.issue_fencing_token(resource)

    keys = Keyspace(db.namespace)
    manager = LockManager(redis_client, keys, fences=slow, clock=clock)
    with pytest.raises(ServerUnavailableError, match="before its lease ran out"):
        await manager.acquire_lock("doc", "holder-1", ttl_seconds=60)
    assert await redis_client.exists(keys.lock("doc")) == 0


async def test_a_lease_is_lost_when_the_deadline_clock_passes_it(
    redis_client: redis.Redis, db: SharedAgentDB
) -> None:
    """Deadlines are on the deadline clock (CLOCK_BOOTTIME): time it counts that the loop's
    clock does not (a suspend) expires the lease."""
    skipped = 0.0

    def clock() -> float:
        return _clock.now() + skipped

    manager = LockManager(redis_client, Keyspace(db.namespace), fences=db.issue_fencing_token)
    assert manager.clock is _clock.now
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    async with manager.lock("doc", "holder-1", ttl_seconds=30) as held:
        after = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert before + 29 < held.valid_until < after + 30

    manager = LockManager(
        redis_client, Keyspace(db.namespace), fences=db.issue_fencing_token, clock=clock
    )
    async with manager.lock("doc", "holder-1", ttl_seconds=30) as held:
        held.check()
        skipped = 31.0  # suspended for 31 s: the loop's clock did not move
        assert held.lost
        with pytest.raises(LockLostError):
            held.check()


def test_lock_waits_by_default_longer_than_one_lease() -> None:
    """With its defaults, lock() waits out the lease of a holder that crashed."""
    assert default_wait(30.0) > 30.0
    assert default_wait(1.0) > 1.0


async def test_an_unfenced_lock_is_granted_while_postgres_is_down(
    redis_client: redis.Redis, namespace: str
) -> None:
    """fenced=False takes the lease from Redis alone: no token, no PostgreSQL needed."""
    manager = LockManager(redis_client, Keyspace(namespace), fences=_unreachable_fences)
    async with manager.lock("instance", "agent-1", ttl_seconds=5, fenced=False) as held:
        assert held.fencing_token is None
        assert not held.lost
    with pytest.raises(ServerUnavailableError):
        await manager.acquire_lock("other", "agent-1", 5)
    assert await manager.acquire_lock("other", "agent-1", 5, fenced=False) is not None


async def _unreachable_fences(resource: str) -> int:
    msg = f"PostgreSQL is unavailable: no token for {resource}"
    raise ServerUnavailableError(msg)
