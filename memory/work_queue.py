"""``WorkQueue``: a role's shared queue of tickets, sharded so it spreads over a Redis Cluster.

A service serves many runs with long-lived workers. Each run keeps its own stream, routes and
consumer groups in its own hash slot (its namespace, :class:`~memory.keys.Keyspace`), exactly
as a run of its own process set does. What a pooled worker needs besides is a way to learn
*which* run has work for its role without reading every run's stream: a ticket, ``(run id,
route)``, that says "this run's route may have a handoff for you".

**Sharding.** A queue is ``shards`` streams, each under a hash tag of its own
(``agentmem-work:{writer-3}:tickets``, :func:`~memory.keys.work_shard`), so the shards of all
roles hash to different slots and therefore, on a cluster, to the primaries that own those
slots. A run is hashed to one shard (:meth:`WorkQueue.shard_of`, SHA-256 of its id), so its
tickets stay in order on one stream, and many runs spread over all shards. A worker reads
every shard of its role through a consumer group per shard (the memory layer's
:class:`~memory.consumer.ConsumerGroup`: pending entries, reclaim of a dead worker's entries
after ``reclaim_idle_ms``, dead letters for entries that are not tickets). No stream or key is
shared by all runs: with ``S`` shards per role and four roles there are ``4 S`` queue streams,
and the run-scoped keys stay in each run's slot.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory._boundary import idempotent, translate_errors
from memory._codec import as_str
from memory.agent_event import AgentEvent
from memory.connections import RedisClient
from memory.consumer import ConsumerGroup, Delivery, GiveUp
from memory.errors import InvalidValueError
from memory.keys import validate_id, work_dead_letters, work_shard, workers_key

TICKET = "work.ticket"
_GROUP = "workers"


@dataclass(frozen=True, slots=True)
class Ticket:
    """Run ``run_id`` may have a handoff on its route ``route``."""

    run_id: str
    route: str

    def event(self, issuer: str) -> AgentEvent:
        return AgentEvent(
            event_type=TICKET,
            agent_id=issuer,
            payload={"run_id": self.run_id, "route": self.route},
        )

    @classmethod
    def of(cls, delivery: Delivery) -> Ticket:
        """The ticket a delivery carries (InvalidValueError if it is no ticket)."""
        event, payload = delivery.event, delivery.event.payload
        if event.event_type != TICKET or not isinstance(payload, dict):
            msg = f"entry {delivery.entry_id} is a {event.event_type}, not a {TICKET}"
            raise InvalidValueError(msg)
        run_id, route = payload.get("run_id"), payload.get("route")
        return cls(validate_id(run_id, "ticket run id"), validate_id(route, "ticket route"))


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
        """Add the tickets, each to its run's shard (one pipelined round trip)."""
        if not tickets:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for ticket in tickets:
                key = work_shard(self.name, self.shard_of(ticket.run_id))
                pipe.xadd(key, ticket.event(issuer).to_fields())  # type: ignore[arg-type]
            await pipe.execute()

    def groups(self, consumer: str, on_give_up: GiveUp | None = None) -> list[ConsumerGroup]:
        """This worker's consumer group of every shard (call ``ensure()`` on each first)."""
        return [
            ConsumerGroup(
                self.client,
                stream_key=work_shard(self.name, shard),
                dead_letter_key=work_dead_letters(self.name, shard),
                route=f"{self.name}-{shard}",
                name=_GROUP,
                consumer=consumer,
                max_deliveries=self.max_deliveries,
                reclaim_idle_ms=self.reclaim_idle_ms,
                on_give_up=on_give_up,
            )
            for shard in range(self.shards)
        ]

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
        """Every shard's backlog (a few pipelined round trips, whatever the shard count)."""
        keys = [work_shard(self.name, shard) for shard in range(self.shards)]
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


def _ms(entry_id: str) -> float:
    """The time (ms since the epoch) a stream entry id was made at."""
    return float(entry_id.split("-", 1)[0])
