"""``Admission``: which submitted runs may start now, per tenant, and which wait.

Each tenant has, in a hash slot of its own (:func:`~memory.keys.tenant_key`): the set of its
runs in flight, the list of its runs waiting (oldest first), and the waiting runs' requests.
One script admits a run: it starts now if the tenant has fewer than ``limit`` runs in flight,
waits if fewer than ``max_queued`` wait, and is refused otherwise (``full``: never accepted and
then dropped). One script releases a finished run and moves the tenant's next waiting runs in
flight, returning their requests for the caller to start. Both recognise a run they have seen
(a retried submission, a second release), so each can be run again with the same effect.

**Started, not just admitted.** A run moved in flight (admitted at once, or by a release) keeps
its request in the tenant's requests until whoever starts it says it has
(:meth:`Admission.started`, after the run's request and first ticket are out). A starter that
dies in between (a submitter, a coordinator releasing) leaves the request there, and the
coordinators' sweep (:func:`service.coordinator.sweep`) starts every run in flight that still
has one: starting is idempotent, so a run started twice is one run.

A run's submission is recorded once in the run's own namespace (:meth:`Admission.claim`, SET
NX): the run id is the submission's idempotency key, so the same submission twice makes one
run. A refused submission removes its record, so it can be tried again later.

A tenant's runs in flight cap what one tenant takes of a shared pool: a tenant submitting ten
times more runs than the others waits behind its own limit, not in front of theirs.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str
from agentmem.memory.connections import RedisClient
from agentmem.memory.keys import TENANTS, Keyspace, tenant_key, validate_id

Admitted = Literal["start", "queued", "known", "full"]

_ADMIT = """
-- KEYS: 1 in flight (set), 2 waiting (list), 3 requests (hash).
-- ARGV: 1 run id, 2 limit, 3 max queued, 4 the request (JSON).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 'known' end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'known' end
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])  -- kept until the run has started
  return 'start'
end
if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[3]) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  return 'queued'
end
return 'full'
"""

_RELEASE = """
-- KEYS: 1 in flight, 2 waiting, 3 requests. ARGV: 1 the finished run id, 2 limit.
-- Returns the runs moved in flight: id, request, id, request, ...
redis.call('SREM', KEYS[1], ARGV[1])
local started = {}
while redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) do
  local run = redis.call('LPOP', KEYS[2])
  if not run then break end
  local request = redis.call('HGET', KEYS[3], run)  -- kept until the run has started
  if request then
    redis.call('SADD', KEYS[1], run)
    started[#started + 1] = run
    started[#started + 1] = request
  end
end
return started
"""


_FLIGHT = """
-- KEYS: 1 in flight, 3 requests. Returns id, request or '', id, request or '', ...
local out = {}
for _, run in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = run
  out[#out + 1] = redis.call('HGET', KEYS[3], run) or ''
end
return out
"""


@translate_errors
class Admission:
    """The admission of one tenant's runs, on a client the caller owns."""

    def __init__(self, client: RedisClient, tenant: str) -> None:
        self.client = client
        self.tenant = validate_id(tenant, "tenant")
        self._keys = [tenant_key(self.tenant, part) for part in ("inflight", "queue", "requests")]
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)
        self._flight = client.register_script(_FLIGHT)

    @idempotent  # a submission's first record wins; a repeat reads it
    async def claim(self, run_id: str) -> str | None:
        """Record that this tenant submitted ``run_id``; returns None when this call recorded
        it, else the tenant whose submission did (the same submission, made again)."""
        key = Keyspace(validate_id(run_id, "run id")).submission()
        record = json.dumps({"tenant": self.tenant})
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, record, nx=True)
            pipe.get(key)
            created, current = await pipe.execute()
        if created:
            await self.client.sadd(TENANTS, self.tenant)
            return None
        return str(json.loads(as_str(current)).get("tenant", ""))

    async def unclaim(self, run_id: str) -> None:
        """Forget a refused submission's record, so that it can be submitted again later."""
        await self.client.delete(Keyspace(validate_id(run_id, "run id")).submission())

    @idempotent  # the script recognises a run it admitted
    async def admit(self, run_id: str, request: str, *, limit: int, max_queued: int) -> Admitted:
        """Start ``run_id`` now, queue it, or refuse it (see the module's notes)."""
        reply = await self._admit(keys=self._keys, args=[run_id, limit, max_queued, request])
        admitted = as_str(reply)
        assert admitted in {"start", "queued", "known", "full"}
        return admitted  # type: ignore[return-value]

    @idempotent  # the run is already out of flight on a repeat; only room is filled
    async def release(self, run_id: str, *, limit: int) -> list[tuple[str, str]]:
        """The run finished: take it out of flight; returns the waiting runs that start now,
        with their requests, oldest first."""
        reply: Any = await self._release(keys=self._keys, args=[run_id, limit])
        items = [as_str(item) for item in reply]
        return list(zip(items[::2], items[1::2], strict=True))

    @idempotent  # an HDEL
    async def started(self, run_id: str) -> None:
        """The run in flight has started (its request and first ticket are out): its request
        is no longer kept."""
        await self.client.hdel(self._keys[2], validate_id(run_id, "run id"))

    @idempotent
    async def in_flight(self) -> list[tuple[str, str | None]]:
        """The tenant's runs in flight, each with its request while it has not started (a
        starter died between admitting or releasing and starting it), else None."""
        reply: Any = await self._flight(keys=[self._keys[0], self._keys[1], self._keys[2]])
        items = [as_str(item) for item in reply]
        return [
            (run, request or None) for run, request in zip(items[::2], items[1::2], strict=True)
        ]

    @idempotent
    async def counts(self) -> tuple[int, int]:
        """How many of the tenant's runs are in flight, and how many wait."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.scard(self._keys[0])
            pipe.llen(self._keys[1])
            inflight, waiting = await pipe.execute()
        return int(inflight), int(waiting)


@translate_errors
class Submissions:
    """Who submitted which run, and which tenants exist, on a client the caller owns."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    @idempotent
    async def tenant_of(self, run_id: str) -> str | None:
        """The tenant that submitted ``run_id`` to the service (None: it was not submitted)."""
        raw = await self.client.get(Keyspace(validate_id(run_id, "run id")).submission())
        return None if raw is None else str(json.loads(as_str(raw)).get("tenant", ""))

    @idempotent
    async def tenants(self) -> list[str]:
        """Every tenant that ever submitted a run."""
        members: Any = await self.client.smembers(TENANTS)
        return sorted(as_str(m) for m in members)
