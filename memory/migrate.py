"""Versioned schema migrations for PostgreSQL: ``memory/migrations/NNNN_name.sql``, in order.

Each file runs once and is recorded in ``agentmem_migrations``; the pending files run in one
transaction that first takes a transaction-level advisory lock, so several agent processes
that connect at the same moment migrate exactly once, and the lock ends with the transaction
whatever happens to the connection or the caller (a cancelled call never leaves it held).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
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
    found = []
    for path in MIGRATIONS_DIR.glob("*.sql"):
        number, _, rest = path.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), path.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(pool: asyncpg.Pool, *, acquire_timeout: float | None = None) -> list[int]:
    """Apply the migrations this database lacks; returns the versions applied now."""
    applied_now = []
    async with pool.acquire(timeout=acquire_timeout) as conn, conn.transaction():
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
