"""Versioned schema migrations for PostgreSQL: ``memory/migrations/NNNN_name.sql``, in order.

Each file runs once and is recorded in ``agentmem_migrations``; the pending files run in one
transaction that first takes a transaction-level advisory lock, so several agent processes
that connect at the same moment migrate exactly once, and the lock ends with the transaction
whatever happens to the connection or the caller (a cancelled call never leaves it held).

Every process checks the schema when it connects (the orchestrator and each agent of a run),
and almost always finds nothing to do: that check is one query, without the transaction or
the lock (so processes that start together do not queue behind each other for it). Only when
a shipped version is missing does the locked transaction run, and it decides again under the
lock.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_Connection = asyncpg.Connection | PoolConnectionProxy  # what pool.acquire() yields, or a bare one
_LOCK_ID = 0x61_67_65_6E_74_6D_65_6D  # "agentmem"
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS agentmem_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    return list(_shipped())


@functools.cache
def _shipped() -> tuple[Migration, ...]:
    """The migration files, read once per process."""
    found = []
    for path in MIGRATIONS_DIR.glob("*.sql"):
        number, _, rest = path.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), path.read_text()))
    return tuple(sorted(found, key=lambda m: m.version))


async def migrate(pool: asyncpg.Pool, *, acquire_timeout: float | None = None) -> list[int]:
    """Apply the migrations this database lacks; returns the versions applied now."""
    async with pool.acquire(timeout=acquire_timeout) as conn:
        if await _up_to_date(conn):
            return []
        return await _apply(conn)


async def _up_to_date(conn: _Connection) -> bool:
    """Whether every shipped migration is recorded (one query; no lock, no transaction)."""
    try:
        done = await conn.fetchval("SELECT array_agg(version) FROM agentmem_migrations")
    except asyncpg.UndefinedTableError:  # a new database: nothing is recorded yet
        return False
    return {m.version for m in migrations()} <= set(done or ())


async def _apply(conn: _Connection) -> list[int]:
    """Apply the missing migrations in one transaction, under the advisory lock."""
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(_BOOTSTRAP)
        done = {
            row["version"] for row in await conn.fetch("SELECT version FROM agentmem_migrations")
        }
        for migration in migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO agentmem_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            logger.info("applying migration %04d %s", migration.version, migration.name)
            applied_now.append(migration.version)
    return applied_now
