"""Migrations apply once, even when several processes migrate at the same moment."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory.migrate import _BOOTSTRAP, _LOCK_ID, migrate, migrations
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


async def test_concurrent_migrations_apply_each_version_once(pg_pool: asyncpg.Pool) -> None:
    """Five migrators at once leave each migration recorded exactly once; reruns do nothing."""
    results: list[list[int]] = []

    async def run() -> None:
        results.append(await migrate(pg_pool))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(run)

    rows = await pg_pool.fetch("SELECT version FROM agentmem_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in migrations()]
    assert sum(len(applied) for applied in results) <= len(migrations())
    assert await migrate(pg_pool) == []


async def test_connect_creates_a_migrated_store_and_close_releases_its_pool(
    servers: ServerUrls, namespace: str
) -> None:
    """connect() owns its pool: the store works, and close() closes the pool."""
    async with await SharedAgentDB.connect(servers.database_url, namespace) as db:
        await db.write("doc", {"ok": True}, "a")
        pool = db.pool
    assert pool.is_closing()


@pytest.fixture
async def new_database(servers: ServerUrls) -> AsyncIterator[str]:
    """The URL of a database created for this test (no schema), dropped after it."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlsplit(servers.database_url)._replace(path=f"/{name}").geturl()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_a_new_database_is_migrated_once_by_concurrent_migrators(new_database: str) -> None:
    """On a database without the schema, five migrators at once apply each version once."""
    pool = await asyncpg.create_pool(new_database, min_size=1, max_size=5)
    try:
        results: list[list[int]] = []

        async def run() -> None:
            results.append(await migrate(pool))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(run)
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in migrations()]
        assert await migrate(pool) == []
    finally:
        await pool.close()


async def test_an_up_to_date_database_is_checked_without_the_migration_lock(
    pg_pool: asyncpg.Pool,
) -> None:
    """While another session holds the migration lock, an up-to-date database still checks."""
    await migrate(pg_pool)
    async with pg_pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            with anyio.fail_after(10):  # it would wait for the lock for ever otherwise
                assert await migrate(pg_pool) == []
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def test_a_database_fenced_by_redis_tokens_migrates_to_postgres_tokens_above_them(
    new_database: str,
) -> None:
    """Migration 0003 applies on a database written before it: new tokens start above the
    Redis-issued ones already recorded, so a resumed run's new grants are accepted."""
    pool = await asyncpg.create_pool(new_database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute(_BOOTSTRAP)
            for migration in migrations()[:2]:
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO agentmem_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            await conn.fetchrow("SELECT * FROM agentmem_write('run', 'doc', '1', 'a', NULL, 41)")
        assert await migrate(pool) == [m.version for m in migrations()[2:]]

        db = SharedAgentDB(pool, "run")
        token = await db.issue_fencing_token("doc")
        assert token > 41
        await db.write("doc", 2, "a", fencing_token=token)
        assert [d.fencing_token for d in await db.history("doc")] == [41, token]
    finally:
        await pool.close()
