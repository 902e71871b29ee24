"""The run index: which runs exist, newest first, without scanning keys.

The orchestrator writes a run's entry when the run starts and again when it ends; ``agentmem
runs`` and the web view read it. One sorted set orders the run ids by start time, one hash
holds each run's entry as JSON; both live in one hash slot and change in one transaction. A
run submitted to the service records its tenant in its entry, and is also ordered in its
tenant's own sorted set (same slot, same transaction), so a tenant's newest runs are read
without reading anyone else's.

A run ends once: :meth:`RunIndex.conclude` writes the ending entry only while the index still
says the run is running (one script), and answers the entry that is there after it, so of two
outcomes raced for one run (it settled as it timed out) the first is kept and the second
learns that it lost; the caller publishes its end event only when its own entry is the one
kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str
from agentmem.memory._scripts import LuaScript
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import InvalidValueError
from agentmem.memory.keys import (
    RUN_INDEX_ORDER,
    RUN_INDEX_RECORDS,
    run_index_tenant_order,
    validate_id,
)

RunOutcome = Literal["running", "completed", "failed"]

# KEYS: order, records[, tenant order]; ARGV: run id, entry JSON, start score. The entry is
# written unless the one there has ended; the reply is the entry there afterwards.
_CONCLUDE = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then
  local ok, current = pcall(cjson.decode, raw)
  if ok and type(current) == 'table' and current['state'] ~= 'running' then return raw end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if KEYS[3] then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return ARGV[2]
"""


class RunEntry(BaseModel):
    """One run as the index knows it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    topic: str = ""
    state: RunOutcome = "running"
    sections: int = Field(default=0, ge=0)
    approved: int = Field(default=0, ge=0)
    started_at: datetime
    ended_at: datetime | None = None
    error: str | None = None
    report_path: str | None = None
    resumed: bool = False  # started again with the id of a run that had already begun
    tenant: str | None = None  # the tenant that submitted it to the service (None: `run`)

    @property
    def seconds(self) -> float | None:
        """How long the run took (None while it runs)."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@translate_errors
class RunIndex:
    """Every run's entry, on a client the caller owns."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._conclude = LuaScript(client, _CONCLUDE)

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def put(self, entry: RunEntry) -> None:
        """Add or replace the entry of ``entry.run_id`` (one transaction)."""
        validate_id(entry.run_id, "run id")
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(RUN_INDEX_ORDER, {entry.run_id: entry.started_at.timestamp()})
            if entry.tenant is not None:
                order = run_index_tenant_order(entry.tenant)
                pipe.zadd(order, {entry.run_id: entry.started_at.timestamp()})
            pipe.hset(RUN_INDEX_RECORDS, entry.run_id, entry.model_dump_json())
            await pipe.execute()

    @idempotent  # a second call finds the run ended and answers the entry it wrote
    async def conclude(self, entry: RunEntry) -> RunEntry:
        """End the run with ``entry`` (``completed`` or ``failed``) unless it has ended
        already; returns the entry the index holds afterwards: ``entry`` if it was kept, else
        the end recorded first (one script)."""
        validate_id(entry.run_id, "run id")
        if entry.state == "running":
            msg = f"run {entry.run_id}: conclude takes an ending entry, not a running one"
            raise InvalidValueError(msg)
        keys = [RUN_INDEX_ORDER, RUN_INDEX_RECORDS]
        if entry.tenant is not None:
            keys.append(run_index_tenant_order(entry.tenant))
        args = [entry.run_id, entry.model_dump_json(), str(entry.started_at.timestamp())]
        raw = await self._conclude(keys, args)
        return RunEntry.model_validate_json(as_str(raw))

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def get(self, run_id: str) -> RunEntry | None:
        """The entry of ``run_id``, or None if the index has none."""
        raw = await self.client.hget(RUN_INDEX_RECORDS, validate_id(run_id, "run id"))
        return None if raw is None else RunEntry.model_validate_json(as_str(raw))

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def get_many(self, run_ids: list[str]) -> list[RunEntry]:
        """The entries of ``run_ids`` that the index has (one HMGET)."""
        if not run_ids:
            return []
        ids = [validate_id(run_id, "run id") for run_id in run_ids]
        raws = await self.client.hmget(RUN_INDEX_RECORDS, ids)
        return [RunEntry.model_validate_json(as_str(raw)) for raw in raws if raw is not None]

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def newest(self, count: int = 50, *, tenant: str | None = None) -> list[RunEntry]:
        """The ``count`` most recently started runs (of ``tenant``), newest first."""
        order = RUN_INDEX_ORDER if tenant is None else run_index_tenant_order(tenant)
        members: Any = await self.client.zrevrange(order, 0, count - 1)
        ids = [as_str(i) for i in members]
        if not ids:
            return []
        raws = await self.client.hmget(RUN_INDEX_RECORDS, ids)
        return [RunEntry.model_validate_json(as_str(raw)) for raw in raws if raw is not None]

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def remove(self, run_id: str) -> None:
        """Forget ``run_id``'s entry (one transaction)."""
        entry = await self.get(run_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(RUN_INDEX_ORDER, run_id)
            if entry is not None and entry.tenant is not None:
                pipe.zrem(run_index_tenant_order(entry.tenant), run_id)
            pipe.hdel(RUN_INDEX_RECORDS, run_id)
            await pipe.execute()
