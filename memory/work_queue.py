"""``WorkQueue``: a role's shared queue of tickets, sharded so it spreads over a Redis Cluster.

A service serves many runs with long-lived workers. Each run keeps its own stream, routes and
consumer groups in its own hash slot (its namespace, :class:`~memory.keys.Keyspace`), exactly
as a run of its own process set does. What a pooled worker needs besides is a way to learn
*which* run has work for its role without reading every run's stream: a ticket, ``(run id,
route)``, that says "this run's route may have a handoff for you".

**Sharding.** A queue is ``shards`` shards, each under a hash tag of its own
(``agentmem-work:{writer-3}:...``), so the shards of all roles hash to different slots and
therefore, on a cluster, to the primaries that own those slots. A run is hashed to one shard
(:meth:`WorkQueue.shard_of`, SHA-256 of its id), so its tickets stay in order, and many runs
spread over all shards. No stream or key is shared by all runs: with ``S`` shards per role and
four roles there are ``4 S`` shards, and the run-scoped keys stay in each run's slot.

**Lanes: fairness between tenants.** Within a shard, each tenant's tickets go to a lane of its
own (:func:`~memory.keys.work_lane`, a stream in the shard's slot); the shard keeps the set of
its lanes and a *bell* (a short stream that gets an entry with every push, for idle workers to
block on: one XREAD per shard, which holds no state and can be cancelled freely). A worker
takes tickets through a :class:`FairReader`: the next ticket of the tenant it has served least
(a count per tenant; a tenant back from idle starts level with the least served, so it cannot
save up turns), each lane read through a consumer group of its own (the memory layer's
:class:`~memory.consumer.ConsumerGroup`: pending entries, reclaim of a dead worker's entries
after ``reclaim_idle_ms``, dead letters for entries that are not tickets). A tenant with a
thousand tickets waiting therefore takes one turn in ``T`` (``T`` tenants with work), and
another tenant's ticket is taken on its next turn, not after that backlog. Fairness is per
worker: each worker applies the rule to what it takes, so the pool is fair to within what one
worker's turn holds. Tenants have equal weight unless given one (``AGENTMEM_TENANT_WEIGHTS``,
``acme=2,beta=1``): a ticket counts ``1 / weight`` on its tenant's clock, so a tenant of
weight 2 takes two turns to another's one while both have work. What it costs: one round
trip for the lanes, one (pipelined ``XINFO GROUPS``, :meth:`WorkQueue.ready`) for which of
them hold tickets not yet delivered, then one read per such lane tried until a ticket is
found; lanes holding only tickets taken and not acknowledged are tried too, at most every
quarter second (a dead worker's tickets, and those handed back on drain, are retaken by
reading them). An idle pass therefore reads no lane; the server still looks at every lane's
group once per pass (tens of tenants: nothing; thousands: a per-shard index of lanes with
work would be the next step).

A ticket is an :class:`~memory.agent_event.AgentEvent` of type :data:`TICKET` whose payload
names the run and the route, so the consumer group's parsing and dead-lettering apply to it
unchanged. Tickets are a hint, at least once: a duplicate finds nothing on the run's route
and is acknowledged; the handoff itself, and its exactly-once effect, stay on the run's route
and its idempotency keys.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentmem.memory._blocking import block_slices
from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str
from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.connections import RedisClient
from agentmem.memory.consumer import ConsumerGroup, Delivery, GiveUp
from agentmem.memory.errors import InvalidValueError
from agentmem.memory.keys import (
    validate_id,
    work_bell,
    work_dead_letters,
    work_lane,
    work_lanes,
    workers_key,
)

TICKET = "work.ticket"
DEFAULT_TENANT = "default"  # the lane of runs no tenant submitted
_GROUP = "workers"
# how often a pass also tries lanes whose tickets are all taken (as a consumer group looks
# for idle entries): a ticket handed back on drain, or a dead worker's, is retaken this soon
_RECLAIM_PAUSE = 0.25
_BELL_LENGTH = 64  # the bell keeps about this many entries (it wakes; it holds nothing)


@dataclass(frozen=True, slots=True)
class Ticket:
    """Run ``run_id`` (of ``tenant``) may have a handoff on its route ``route``."""

    run_id: str
    route: str
    tenant: str = DEFAULT_TENANT

    def event(self, issuer: str) -> AgentEvent:
        return AgentEvent(
            event_type=TICKET,
            agent_id=issuer,
            payload={"run_id": self.run_id, "route": self.route, "tenant": self.tenant},
        )

    @classmethod
    def of(cls, delivery: Delivery) -> Ticket:
        """The ticket a delivery carries (InvalidValueError if it is no ticket)."""
        event, payload = delivery.event, delivery.event.payload
        if event.event_type != TICKET or not isinstance(payload, dict):
            msg = f"entry {delivery.entry_id} is a {event.event_type}, not a {TICKET}"
            raise InvalidValueError(msg)
        run_id, route = payload.get("run_id"), payload.get("route")
        tenant = payload.get("tenant", DEFAULT_TENANT)
        return cls(
            validate_id(run_id, "ticket run id"),
            validate_id(route, "ticket route"),
            validate_id(tenant, "ticket tenant"),
        )


@dataclass(frozen=True, slots=True)
class ShardBacklog:
    """One shard's backlog: tickets not yet taken, taken and not yet acknowledged, and the age
    of the oldest of either (seconds; 0 when there is none)."""

    waiting: int
    pending: int
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class WorkerSlots:
    """One live worker of a queue: its slots, and how many are busy."""

    worker: str
    slots: int
    busy: int
    pid: int = 0  # the worker's process id on its host


@translate_errors
class WorkQueue:
    """The ``shards`` ticket streams of queue ``name`` (one per role), on the caller's client."""

    def __init__(
        self,
        client: RedisClient,
        name: str,
        shards: int = 4,
        *,
        reclaim_idle_ms: int = 30_000,
        max_deliveries: int = 1_000,
    ) -> None:
        if not 1 <= shards <= 1024:
            msg = f"a work queue has 1 to 1024 shards, not {shards}"
            raise InvalidValueError(msg)
        self.client = client
        self.name = validate_id(name, "queue")
        self.shards = shards
        self.reclaim_idle_ms = reclaim_idle_ms
        self.max_deliveries = max_deliveries

    def shard_of(self, run_id: str) -> int:
        """The shard a run's tickets go to: stable, and spread evenly over the shards."""
        digest = hashlib.sha256(validate_id(run_id, "run id").encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.shards

    async def push(self, tickets: Sequence[Ticket], issuer: str) -> None:
        """Add the tickets, each to its tenant's lane of its run's shard, and ring the bells
        of the shards they went to (one pipelined round trip)."""
        if not tickets:
            return
        rung: set[int] = set()
        async with self.client.pipeline(transaction=False) as pipe:
            for ticket in tickets:
                shard = self.shard_of(ticket.run_id)
                lane = work_lane(self.name, shard, ticket.tenant)
                pipe.xadd(lane, ticket.event(issuer).to_fields())  # type: ignore[arg-type]
                pipe.sadd(work_lanes(self.name, shard), ticket.tenant)
                rung.add(shard)
            for shard in sorted(rung):
                bell = work_bell(self.name, shard)
                pipe.xadd(bell, {"rang": "1"}, maxlen=_BELL_LENGTH, approximate=True)
            await pipe.execute()

    def reader(
        self,
        consumer: str,
        on_give_up: GiveUp | None = None,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> FairReader:
        """What ``consumer`` takes the queue's tickets through, tenants in turn (a tenant of
        weight ``w`` takes ``w`` turns to a tenant of weight 1; not named: 1)."""
        return FairReader(self, consumer, on_give_up, weights=weights)

    def lane_group(
        self, consumer: str, shard: int, tenant: str, on_give_up: GiveUp | None = None
    ) -> ConsumerGroup:
        """``consumer``'s group on one tenant's lane of the shard (call ``ensure()`` first)."""
        return ConsumerGroup(
            self.client,
            stream_key=work_lane(self.name, shard, tenant),
            dead_letter_key=work_dead_letters(self.name, shard),
            route=f"{self.name}-{shard}",
            name=_GROUP,
            consumer=consumer,
            max_deliveries=self.max_deliveries,
            reclaim_idle_ms=self.reclaim_idle_ms,
            on_give_up=on_give_up,
        )

    @idempotent
    async def lanes(self) -> list[tuple[int, str]]:
        """Every lane of the queue: ``(shard, tenant)``, sorted (one pipelined round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.smembers(work_lanes(self.name, shard))
            members = await pipe.execute()
        return sorted((shard, as_str(t)) for shard, ts in enumerate(members) for t in ts)

    @idempotent
    async def ready(
        self, lanes: Sequence[tuple[int, str]], *, pending: bool
    ) -> set[tuple[int, str]]:
        """The lanes of ``lanes`` that may hold a ticket for the workers: entries not yet
        delivered to the group (or no group yet), and with ``pending``, also entries taken and
        not acknowledged (a dead worker's, to reclaim). One pipelined round trip."""
        if not lanes:
            return set()
        async with self.client.pipeline(transaction=False) as pipe:
            for shard, tenant in lanes:
                pipe.xinfo_groups(work_lane(self.name, shard, tenant))
            replies = await pipe.execute(raise_on_error=False)
        ready = set()
        for lane, reply in zip(lanes, replies, strict=True):
            if isinstance(reply, Exception):  # the lane is gone (or unreadable): try it
                ready.add(lane)
                continue
            group = next((g for g in reply if as_str(g["name"]) == _GROUP), None)
            if group is None or group.get("lag") is None:  # never read, or lag unknown
                ready.add(lane)
                continue
            waiting = int(group["lag"]) > 0
            if waiting or (pending and int(group.get("pending") or 0) > 0):
                ready.add(lane)
        return ready

    async def wait(self, shard: int, after: str, block_ms: int) -> str:
        """Block until the shard's bell rings after ``after`` (a bell id, or ``$``: now), or
        ``block_ms``; returns the id to wait after next time."""
        key = work_bell(self.name, shard)
        for block in block_slices(self.client, block_ms):
            reply: Any = await self.client.xread({key: after}, count=100, block=block)
            if reply:
                return as_str(reply[0][1][-1][0])
        return after

    @idempotent
    async def beat(
        self, worker: str, slots: int, busy: int, ttl_seconds: float, pid: int = 0
    ) -> None:
        """Say that ``worker`` is alive with ``busy`` of its ``slots`` taken, until
        ``ttl_seconds`` from now (repeat it sooner)."""
        record = {"slots": slots, "busy": busy, "until": time.time() + ttl_seconds, "pid": pid}
        await self.client.hset(workers_key(self.name), worker, json.dumps(record))

    async def leave(self, worker: str) -> None:
        """``worker`` has stopped."""
        await self.client.hdel(workers_key(self.name), worker)

    @idempotent
    async def workers(self) -> list[WorkerSlots]:
        """The queue's live workers (those whose last beat has not expired)."""
        raw: Any = await self.client.hgetall(workers_key(self.name))
        now, live = time.time(), []
        for name, value in raw.items():
            record = json.loads(as_str(value))
            if record["until"] >= now:
                slots, busy = int(record["slots"]), int(record["busy"])
                live.append(WorkerSlots(as_str(name), slots, busy, int(record.get("pid", 0))))
        return sorted(live, key=lambda w: w.worker)

    @idempotent
    async def backlog(self) -> list[ShardBacklog]:
        """Every shard's backlog, summed over its lanes (a few pipelined round trips, whatever
        the shard and lane counts)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.smembers(work_lanes(self.name, shard))
            members = await pipe.execute()
        lanes = [
            (shard, work_lane(self.name, shard, as_str(tenant)))
            for shard, tenants in enumerate(members)
            for tenant in sorted(as_str(t) for t in tenants)
        ]
        each = await self._stream_backlogs([key for _shard, key in lanes])
        result = []
        for shard in range(self.shards):
            mine = [b for (s, _key), b in zip(lanes, each, strict=True) if s == shard]
            result.append(
                ShardBacklog(
                    sum(b.waiting for b in mine),
                    sum(b.pending for b in mine),
                    max((b.oldest_seconds for b in mine), default=0.0),
                )
            )
        return result

    async def _stream_backlogs(self, keys: list[str]) -> list[ShardBacklog]:
        """The backlog of each of the streams ``keys``."""
        if not keys:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xlen(key)
            lengths = await pipe.execute()
        live = [key for key, length in zip(keys, lengths, strict=True) if length]
        groups: dict[str, dict[str, Any]] = {}
        if live:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in live:
                    pipe.xinfo_groups(key)
                replies = await pipe.execute()
            for key, reply in zip(live, replies, strict=True):
                found = next((g for g in reply if as_str(g["name"]) == _GROUP), None)
                if found is not None:
                    groups[key] = found
        pendings: dict[str, Any] = {}
        if groups:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in groups:
                    pipe.xpending(key, _GROUP)
                pendings = dict(zip(groups, await pipe.execute(), strict=True))
        # the first entry not yet delivered: after the group's last delivered id, or the first
        firsts: dict[str, Any] = {}
        if live:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in live:
                    last = groups[key]["last-delivered-id"] if key in groups else None
                    pipe.xrange(key, f"({as_str(last)}" if last else "-", "+", count=1)
                firsts = dict(zip(live, await pipe.execute(), strict=True))
        now_ms = time.time() * 1000
        result = []
        for key, length in zip(keys, lengths, strict=True):
            group = groups.get(key)
            waiting = int(group.get("lag") or 0) if group is not None else int(length)
            pending = pendings.get(key) or {}
            count = int(pending.get("pending") or 0)
            ages = [now_ms - _ms(as_str(pending["min"]))] if count else []
            first = firsts.get(key)
            if waiting and first:
                ages.append(now_ms - _ms(as_str(first[0][0])))
            result.append(ShardBacklog(waiting, count, max(ages, default=0.0) / 1000))
        return result


class FairReader:
    """One worker's reader of a whole queue: the next ticket of the tenant it served least
    (see the module's notes). Not shared between tasks."""

    def __init__(
        self,
        queue: WorkQueue,
        consumer: str,
        on_give_up: GiveUp | None = None,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.queue = queue
        self.consumer = consumer
        self.on_give_up = on_give_up
        self.weights = dict(weights or {})
        self._groups: dict[tuple[int, str], ConsumerGroup] = {}
        # tickets taken per tenant, each counted 1 / the tenant's weight (a virtual clock)
        self._served: dict[str, float] = {}
        self._turns: dict[str, int] = {}  # tickets taken per tenant (which shard goes first)
        self._next_reclaim = 0.0  # when a pass next looks at lanes with only pending tickets

    async def take(self) -> tuple[ConsumerGroup, Delivery] | None:
        """A ticket of the tenant served least that has one (its own pending ones first, then
        a dead worker's, then new ones), with the group to acknowledge it through; None when
        no lane has one."""
        lanes = await self.queue.lanes()
        now = time.monotonic()
        reclaim = now >= self._next_reclaim  # lanes with tickets taken, not acknowledged too
        if reclaim:
            self._next_reclaim = now + min(_RECLAIM_PAUSE, self.queue.reclaim_idle_ms / 4000)
        lanes = sorted(await self.queue.ready(lanes, pending=reclaim))
        tenants = sorted({t for _s, t in lanes}, key=lambda t: (self._served.get(t, 0), t))
        if not tenants:
            return None
        floor = self._served.get(tenants[0], 0.0)
        for tenant in tenants:
            shards = [s for s, t in lanes if t == tenant]
            turn = self._served.get(tenant, 0.0)
            first = self._turns.get(tenant, 0)
            for i in range(len(shards)):  # spread a tenant's turns over its shards
                shard = shards[(first + i) % len(shards)]
                group = await self._group(shard, tenant)
                taken = await group.read(count=1, block_ms=0)
                if taken:  # a tenant back from idle starts level with the least served
                    self._served[tenant] = max(turn, floor) + 1 / self.weights.get(tenant, 1.0)
                    self._turns[tenant] = first + 1
                    return group, taken[0]
        return None

    async def _group(self, shard: int, tenant: str) -> ConsumerGroup:
        group = self._groups.get((shard, tenant))
        if group is None:
            group = self.queue.lane_group(self.consumer, shard, tenant, self.on_give_up)
            await group.ensure()
            self._groups[shard, tenant] = group
        return group


def _ms(entry_id: str) -> float:
    """The time (ms since the epoch) a stream entry id was made at."""
    return float(entry_id.split("-", 1)[0])
