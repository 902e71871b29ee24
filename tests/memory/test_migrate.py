"""Migrations apply once, even when several processes migrate at the same moment."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from devservers import ServerUrls
from memory.migrate import migrate, migrations
from memory.shared_db import SharedAgentDB

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
