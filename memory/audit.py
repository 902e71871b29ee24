"""The audit log: who (tenant, key id) did what to what, per tenant, in PostgreSQL.

Each record is one row of ``tenant_audit`` (migration 0004), written by one INSERT: the
tenant, the key id that authenticated the request (never the key; ``operator`` for the CLI),
the action (``submit``, ``requeue``, ``forget``, ``key.add``, ``key.revoke``), its target (a
run id, a key id) and a small JSON detail. ``agentmem audit [--tenant T]`` reads it, oldest
first. A run's own log also carries an ``audit.recorded`` event for each submission and
requeue (:func:`web.tenancy.audited`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from agentmem.memory._boundary import translate_errors


@dataclass(frozen=True, slots=True)
class AuditRecord:
    tenant: str
    key_id: str | None
    action: str
    target: str
    at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@translate_errors
class AuditLog:
    """The audit log, on a PostgreSQL pool the caller owns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, record: AuditRecord) -> None:
        """Append one record (one INSERT)."""
        await self.pool.execute(
            "INSERT INTO tenant_audit (tenant, key_id, action, target, detail)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            record.tenant,
            record.key_id,
            record.action,
            record.target,
            json.dumps(record.detail),
        )

    async def read(self, tenant: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` records (of ``tenant``), oldest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM (SELECT id, tenant, key_id, action, target, detail, at"
            " FROM tenant_audit WHERE $1::text IS NULL OR tenant = $1"
            " ORDER BY id DESC LIMIT $2) newest ORDER BY id",
            tenant,
            limit,
        )
        return [
            AuditRecord(
                r["tenant"], r["key_id"], r["action"], r["target"], r["at"], json.loads(r["detail"])
            )
            for r in rows
        ]
