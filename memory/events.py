"""``EventStore``: the run's event log and handoffs on Redis Streams.

Each :class:`AgentEvent` is one stream entry with four fields: ``type``, ``agent``, ``ts``
(ISO 8601, UTC) and ``payload`` (one JSON object, so its types survive). Readers get the
whole log (:meth:`EventStore.read_events`, :meth:`EventStore.replay`), follow it live
(:meth:`EventStore.subscribe`), or share it as workers of a consumer group
(:meth:`EventStore.group`, see :mod:`memory.consumer`). Entries that cannot be processed end
in a dead-letter stream, where they can be listed and requeued.

**Routes.** A store made with ``routes`` (event type -> route name) also appends each event of
a routed type to that route's stream (:meth:`memory.keys.Keyspace.route`: a key that no stream
name and no other route can produce), in the same atomic step as the log entry: the log keeps
everything (replay, observers), and a worker that acts on a few types reads only its route
(``group(..., route=...)``, ``subscribe(route=...)``) instead of every event of the log. The
dead letters of every route are kept with the log's, each naming the route it came from, so
:meth:`EventStore.requeue` puts it back where its workers read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from agentmem.memory import telemetry
from agentmem.memory._blocking import longest_block_ms
from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str
from agentmem.memory._resource import AsyncResource
from agentmem.memory._scripts import LuaScript
from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.connections import RedisClient
from agentmem.memory.consumer import ORIGINAL_FIELDS, ConsumerGroup, DeadLetter, GiveUp
from agentmem.memory.errors import AgentMemoryError, PoisonMessageError
from agentmem.memory.keys import Keyspace, validate_id
from agentmem.memory.limits import Limits
from agentmem.memory.projection import Projection

__all__ = ["AgentEvent", "DeadLetter", "EventStore"]

logger = logging.getLogger(__name__)

S = TypeVar("S")

_PUBLISH = """
-- KEYS: 1 stream, 2 publish-key hash, 3.. the batch's route streams.
-- ARGV, for each event in order: its publish key ('' for none), the index in KEYS of its
-- route's stream (0 for none), n, then its n field, value pairs (2n values).
-- Returns the events' ids in the stream: for a key published before, its first entry's id.
local ids, i = {}, 1
while i <= #ARGV do
  local key, route, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + 2 * n
  i = last + 1
  local id = false
  if key ~= '' then id = redis.call('HGET', KEYS[2], key) end
  if not id then
    id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, first, last))
    if route > 0 then redis.call('XADD', KEYS[route], '*', unpack(ARGV, first, last)) end
    if key ~= '' then redis.call('HSET', KEYS[2], key, id) end
  end
  ids[#ids + 1] = id
end
return ids
"""

_REQUEUE = """
-- KEYS: 1 dead-letter stream, 2 stream. ARGV: 1 dead-letter id, 2 the field with the original.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local fields = found[1][2]
local original
for i = 1, #fields, 2 do
  if fields[i] == ARGV[2] then original = cjson.decode(fields[i + 1]) end
end
local args = {}
for name, value in pairs(original) do
  args[#args + 1] = name
  args[#args + 1] = value
end
local id = redis.call('XADD', KEYS[2], '*', unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""


@translate_errors
class EventStore(AsyncResource):
    """One stream of a namespace (and its routes): publish, read, follow, replay, consume as a
    group."""

    def __init__(
        self,
        client: RedisClient,
        namespace: str = "default",
        stream: str = "events",
        *,
        max_deliveries: int = 5,
        reclaim_idle_ms: int = 30_000,
        limits: Limits | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.limits = limits or Limits()
        self.keys = Keyspace(namespace)
        self.stream = validate_id(stream, "stream")
        self.stream_key = self.keys.stream(stream)
        self.dead_letter_key = self.keys.dead_letters(stream)
        self.max_deliveries = max_deliveries
        self.reclaim_idle_ms = reclaim_idle_ms
        self.routes = {
            validate_id(event_type, "event type"): validate_id(route, "route")
            for event_type, route in (routes or {}).items()
        }
        self._publish = LuaScript(client, _PUBLISH)
        self._requeue = client.register_script(_REQUEUE)

    def route_key(self, route: str | None) -> str:
        """The key of a route's stream (``None``: the log itself)."""
        if route is None:
            return self.stream_key
        return self.keys.route(self.stream, route)

    async def publish(self, event: AgentEvent, *, idempotency_key: str | None = None) -> str:
        """Append an event (and to its route's stream, if its type is routed); with a key,
        appending again returns the first entry's id and appends nothing."""
        [entry_id] = await self.publish_keyed([(event, idempotency_key)])
        return entry_id

    async def publish_many(self, events: Sequence[AgentEvent]) -> list[str]:
        """Append several events (and their routed copies) atomically and in order, in one
        round trip; returns their ids in the log."""
        return await self.publish_keyed([(event, None) for event in events])

    async def publish_keyed(self, events: Sequence[tuple[AgentEvent, str | None]]) -> list[str]:
        """Append several ``(event, idempotency_key or None)`` atomically and in order, in one
        round trip (one script); an event whose key was published before appends nothing and
        gets its first entry's id. Returns the ids in the log, in order."""
        if not events:
            return []
        keys = [self.stream_key, self.keys.publish_keys(self.stream)]
        args: list[str | int] = []
        # An event without a key gets one chosen now, before the first attempt, so that the
        # batch sent again after a lost reply (memory._boundary's one retry) appends nothing.
        call = f"auto-{secrets.token_hex(12)}"
        for position, (event, idempotency_key) in enumerate(events):
            fields = event.to_fields(self.limits)
            if idempotency_key is not None:
                validate_id(idempotency_key, "idempotency_key")
            route = self.routes.get(event.event_type)
            index = 0
            if route is not None:
                route_key = self.route_key(route)
                if route_key not in keys:
                    keys.append(route_key)
                index = keys.index(route_key) + 1  # Lua counts from 1
            args += [idempotency_key or f"{call}.{position}", index, len(fields)]
            args += [value for pair in fields.items() for value in pair]
        # Sent later (a write-ahead log's sender): the span joins the trace the event names.
        parent = None if telemetry.current_traceparent() else events[0][0].traceparent
        with telemetry.operation(
            "event.publish",
            "redis",
            self.keys.namespace,
            kind="producer",
            parent=parent,
            stream=self.stream,
            count=len(events),
        ):
            return await self._send_publish(keys, args)

    @idempotent  # every event carries a key chosen before the first attempt
    async def _send_publish(self, keys: list[str], args: list[str | int]) -> list[str]:
        return [as_str(entry_id) for entry_id in await self._publish(keys, args)]

    @idempotent  # a read
    async def read_events(self, since: str = "0-0", count: int = 100) -> list[AgentEvent]:
        """Up to ``count`` events after ``since`` (exclusive), oldest first."""
        entries: Any = await self.client.xrange(self.stream_key, f"({since}", "+", count=count)
        return self._parse(entries or [])

    async def subscribe(
        self, last_id: str = "$", *, block_ms: int = 1000, route: str | None = None
    ) -> AsyncGenerator[AgentEvent, None]:
        """Follow the stream, or one route's: every event after ``last_id`` ("$": after the
        newest now). Ids are the followed stream's own.

        Each wait for new entries lasts up to ``block_ms``, and never longer than half the
        client's command timeout (:mod:`memory._blocking`): an idle stream is not an outage."""
        key = self.route_key(route)
        longest = longest_block_ms(self.client)
        block = block_ms if longest is None or 0 < block_ms <= longest else longest
        if last_id == "$":
            last_id = await self.last_id(route)
        while True:
            reply: Any = await self.client.xread({key: last_id}, count=100, block=block)
            for _stream, entries in reply or []:
                for event in self._parse(entries):
                    yield event
                last_id = as_str(entries[-1][0])

    async def replay(self, projection: Projection[S], since: str = "0-0", *, page: int = 1000) -> S:
        """Rebuild a view by applying every event after ``since`` to the projection, in order."""
        state = projection.initial()
        while True:
            entries: Any = await self.client.xrange(self.stream_key, f"({since}", "+", count=page)
            if not entries:
                return state
            for event in self._parse(entries):
                state = projection.apply(state, event)
            since = as_str(entries[-1][0])

    @idempotent  # a read
    async def last_id(self, route: str | None = None) -> str:
        """The id of the newest entry ever added to the stream (or the route's), or "0-0" for a
        stream that does not exist."""
        try:
            info: Any = await self.client.xinfo_stream(self.route_key(route))
        except ResponseError:
            return "0-0"
        return as_str(info["last-generated-id"])

    def group(
        self,
        name: str,
        consumer: str,
        *,
        route: str | None = None,
        on_give_up: GiveUp | None = None,
    ) -> ConsumerGroup:
        """A worker of consumer group ``name`` on the log, or on a route's stream; call
        ``ensure()`` once before ``read()``.

        ``on_give_up`` is awaited for each valid event this worker dead-letters because its
        deliveries kept crashing their workers (so someone hears about it).
        """
        return ConsumerGroup(
            self.client,
            stream_key=self.route_key(route),
            route=route or "",
            dead_letter_key=self.dead_letter_key,
            name=name,
            consumer=consumer,
            max_deliveries=self.max_deliveries,
            reclaim_idle_ms=self.reclaim_idle_ms,
            on_give_up=on_give_up,
        )

    @idempotent  # a read
    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of this stream."""
        entries: Any = await self.client.xrange(self.dead_letter_key, "-", "+", count=count)
        return [DeadLetter.from_entry(as_str(entry_id), raw) for entry_id, raw in entries or []]

    async def requeue(self, dead_letter_id: str) -> str:
        """Append a dead letter's original entry again to the stream it was read from (the log,
        or its route's stream); returns its new id there."""
        validate_id(dead_letter_id, "dead letter id")
        found: Any = await self.client.xrange(self.dead_letter_key, dead_letter_id, dead_letter_id)
        entry_id = None
        if found:
            letter = DeadLetter.from_entry(dead_letter_id, found[0][1])
            target = self.route_key(letter.route or None)
            entry_id = await self._requeue(
                keys=[self.dead_letter_key, target], args=[dead_letter_id, ORIGINAL_FIELDS]
            )
        if entry_id is None:
            msg = (
                f"no dead letter {dead_letter_id!r} on stream {self.stream!r}; "
                "list them with `agentmem dead-letters`"
            )
            raise AgentMemoryError(msg)
        return as_str(entry_id)

    async def trim_acknowledged(self, route: str | None = None) -> int:
        """Drop the entries every group of the stream (or of the route's) has acknowledged;
        returns how many were dropped.

        The cut is the oldest entry any group still needs: its oldest pending entry, or the
        first entry after the last one it was given. Without groups nothing is dropped.
        """
        key = self.route_key(route)
        try:
            groups = await self.client.xinfo_groups(key)
        except ResponseError:
            return 0
        if not groups:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for info in groups:
                pipe.xpending(key, info["name"])
            pendings = await pipe.execute()
        needed = []
        for info, pending in zip(groups, pendings, strict=True):
            if pending["pending"]:
                needed.append(_parse_id(as_str(pending["min"])))
            else:
                ms, seq = _parse_id(as_str(info["last-delivered-id"]))
                needed.append((ms, seq + 1))
        ms, seq = min(needed)
        return int(await self.client.xtrim(key, minid=f"{ms}-{seq}", approximate=False))

    def _parse(self, entries: Sequence[Any]) -> list[AgentEvent]:
        events = []
        for entry_id, fields in entries:
            try:
                events.append(AgentEvent.from_fields(as_str(entry_id), fields))
            except PoisonMessageError as exc:
                logger.warning("skipping %s", exc)
        return events


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
