"""Reads that tolerate lag go to a streaming PostgreSQL replica; the rest stay on the primary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import asyncpg
import pytest

from agentmem.devservers import ServerUrls
from agentmem.devservers.replica import ReplicatedPostgres, local_replicated_postgres
from agentmem.memory import open_memory
from agentmem.memory.connections import MemoryConfig
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def replicated() -> Iterator[ReplicatedPostgres]:
    """A primary and its streaming replica, for this module."""
    with local_replicated_postgres() as servers:
        yield servers


@pytest.fixture
async def db(replicated: ReplicatedPostgres, namespace: str) -> AsyncIterator[SharedAgentDB]:
    """A store on the primary (migrated) with a read pool on the replica."""
    async with await SharedAgentDB.connect(replicated.url, namespace) as store:
        read_pool = await asyncpg.create_pool(replicated.read_url, min_size=0, max_size=2)
        store.read_pool = read_pool
        yield store
        await read_pool.close()


async def caught_up(replicated: ReplicatedPostgres) -> None:
    """Wait (bounded) until the replica has replayed everything the primary wrote."""
    primary = await asyncpg.connect(replicated.url)
    replica = await asyncpg.connect(replicated.read_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        with anyio.fail_after(10):
            while True:
                if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                    return
                await anyio.sleep(0.01)
    finally:
        await primary.close()
        await replica.close()


@asynccontextmanager
async def replay_paused(replicated: ReplicatedPostgres) -> AsyncIterator[None]:
    """The replica stops replaying the primary's WAL: it lags for as long as this lasts."""
    await caught_up(replicated)
    replica = await asyncpg.connect(replicated.read_url)
    try:
        await replica.execute("SELECT pg_wal_replay_pause()")
        yield
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()


async def test_a_write_on_the_primary_becomes_visible_on_the_replica(
    db: SharedAgentDB, replicated: ReplicatedPostgres
) -> None:
    """What the primary commits is streamed to the replica, schema included."""
    await db.write("doc", {"n": 1}, "writer-1")
    await caught_up(replicated)
    doc = await db.replica().read("doc")
    assert doc is not None
    assert doc.value == {"n": 1}


async def test_lag_tolerant_reads_go_to_the_replica_and_other_reads_to_the_primary(
    db: SharedAgentDB, replicated: ReplicatedPostgres
) -> None:
    """While the replica lags, the view shows the old version and plain reads the new one."""
    await db.write("doc", {"n": 1}, "writer-1")
    async with replay_paused(replicated):
        await db.write("doc", {"n": 2}, "writer-1", expected_version=1)
        view = db.replica()
        assert (await db.read("doc")).version == 2  # type: ignore[union-attr]
        assert (await view.read("doc")).version == 1  # type: ignore[union-attr]
        assert [d.version for d in await view.history("doc")] == [1]
        assert (await view.read_many(["doc"]))["doc"].version == 1
        versioned = await view.read("doc", version=2)  # asked for by number: the primary has it
        assert versioned is not None
        assert versioned.value == {"n": 2}
    await caught_up(replicated)
    assert [d.version for d in await db.replica().history("doc")] == [1, 2]


async def test_update_through_the_view_reads_the_latest_version_from_the_primary(
    db: SharedAgentDB, replicated: ReplicatedPostgres
) -> None:
    """A read-modify-write never starts from the replica's stale copy."""
    await db.write("counter", 1, "writer-1")
    async with replay_paused(replicated):
        await db.write("counter", 2, "writer-1", expected_version=1)
        updated = await db.replica().update("counter", lambda n: n + 1, "writer-1", attempts=2)
    assert (updated.version, updated.value) == (3, 3)


async def test_connecting_to_the_replica_does_not_migrate_it(
    replicated: ReplicatedPostgres, namespace: str
) -> None:
    """A store opened on a read-only server skips migrations instead of failing on them."""
    async with await SharedAgentDB.connect(replicated.read_url, namespace) as on_replica:
        assert await on_replica.migrate() == []
        assert await on_replica.keys() == []


async def test_lag_tolerant_reads_fall_back_to_the_primary_when_the_replica_is_down(
    db: SharedAgentDB, replicated: ReplicatedPostgres
) -> None:
    """A crashed replica costs the view its replica, not its answers."""
    await db.write("doc", {"n": 1}, "writer-1")
    await caught_up(replicated)
    replicated.replica.crash()
    try:
        doc = await db.replica().read("doc")
        assert doc is not None
        assert doc.value == {"n": 1}
        assert await db.replica().keys() == ["doc"]
    finally:
        replicated.replica.start()


async def test_open_memory_reads_through_the_configured_replica(
    replicated: ReplicatedPostgres, servers: ServerUrls, namespace: str
) -> None:
    """``database_read_url`` gives ``m.db.replica()`` a pool on the replica; plain reads stay."""
    config = MemoryConfig(
        redis_url=servers.redis_url,
        database_url=replicated.url,
        database_read_url=replicated.read_url,
    )
    async with open_memory(config, namespace) as m:
        assert m.db.read_pool is not None
        assert await m.db.read_pool.fetchval("SELECT pg_is_in_recovery()")
        assert not await m.db.pool.fetchval("SELECT pg_is_in_recovery()")
        await m.db.write("doc", "first", "writer-1")
        async with replay_paused(replicated):
            await m.db.write("doc", "second", "writer-1")
            assert (await m.db.replica().read("doc")).value == "first"  # type: ignore[union-attr]
            assert (await m.db.read("doc")).value == "second"  # type: ignore[union-attr]


async def test_open_memory_opens_while_the_replica_is_down_and_reads_the_primary(
    replicated: ReplicatedPostgres, servers: ServerUrls, namespace: str
) -> None:
    """A replica that is down when a process starts does not stop it."""
    config = MemoryConfig(
        redis_url=servers.redis_url,
        database_url=replicated.url,
        database_read_url=replicated.read_url,
        connect_timeout=1.0,
    )
    replicated.replica.crash()
    try:
        async with open_memory(config, namespace) as m:
            await m.db.write("doc", "only", "writer-1")
            assert (await m.db.replica().read("doc")).value == "only"  # type: ignore[union-attr]
    finally:
        replicated.replica.start()
