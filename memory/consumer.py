"""Consumer groups: several workers of one role share a stream, and nothing is lost.

A worker acknowledges an entry only after its effect is durable. An entry it took but never
acknowledged (the worker crashed, or was killed) stays pending in the group; once it has been
idle for ``reclaim_idle_ms`` any live worker of the group claims it (XAUTOCLAIM) before
reading new entries (while new entries keep it busy it looks again only after a quarter of
that idle time, 0.25 s at most, so a hot loop of reads costs one round trip per read). Every
delivery counts: an entry that failed, or crashed its worker, ``max_deliveries`` times is
moved to the dead-letter stream with the reason, and so is an entry that is not a valid event
at all, at its first delivery. A consumer never crashes on bad input.

A worker on a long step calls :meth:`ConsumerGroup.touch` now and then, so that its live
entries are never mistaken for a dead worker's.

:meth:`ConsumerGroup.pending_summary` shows what a group has taken and not acknowledged, who
holds it, and how many entries the group has not been delivered yet (its lag), without
claiming, acknowledging or reading anything: one transaction of XPENDING (summary), XPENDING
(the oldest entry) and XINFO GROUPS.

A failure that may be transient (:meth:`ConsumerGroup.fail` without ``final``) is retried
after a backoff that doubles with each attempt: the entry is left pending and its idle time
is set so that it becomes reclaimable after that backoff.

**Who may settle an entry.** An entry belongs to the worker it was last delivered to (its
owner in the group's pending list). :meth:`~ConsumerGroup.ack`, :meth:`~ConsumerGroup.touch`
and :meth:`~ConsumerGroup.fail` act only while this worker is still the owner, in one script
that checks the owner and then acts; otherwise they change nothing and raise
:class:`~memory.errors.DeliveryLostError`. So a worker that stalled past ``reclaim_idle_ms``
cannot take its entry back from the worker that reclaimed it, nor end that worker's claim
with a late ack: it learns that it lost the entry, and should drop the work. The group
promises at-least-once delivery, not exactly-once: a stalled worker may already have done
part of the work when it learns this, so a handler's effects must be idempotent (keyed by
the entry, or by something in the event) for the whole to take effect once.

**A lost reply is not a lost entry.** ``XREADGROUP >`` hands entries out as it replies: when
the reply is lost (the connection dropped, the read was cancelled) the entries are pending
with this worker and nobody holds them. After any read that failed, the next read first
reads this worker's own pending entries again (``XREADGROUP`` from id 0, which returns what
was delivered to this consumer and not acknowledged) and hands out those it does not already
hold, instead of leaving them stranded until they are reclaimed.

:meth:`ConsumerGroup.pending_summary` shows what a group has yet to finish (entries per
worker, the oldest pending one and its idle time, the lag) without touching any entry.

**Blocking reads** are sent in pieces shorter than the client's command timeout
(:mod:`memory._blocking`), so a ``block_ms`` longer than that timeout on an idle stream returns
empty, not a false outage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import ResponseError

from agentmem.memory import telemetry
from agentmem.memory._blocking import block_slices
from agentmem.memory._boundary import translate_errors
from agentmem.memory._codec import as_str, utc_now
from agentmem.memory._scripts import LuaScript
from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import DeliveryLostError, PoisonMessageError, StoreError
from agentmem.memory.keys import validate_id

logger = logging.getLogger(__name__)

_FIRST_RETRY_MS = 250
_MAX_RECLAIM_PAUSE = 0.25  # seconds between looks for idle entries while new ones keep coming

_SETTLE = """
-- KEYS: 1 stream, 2 dead-letter stream. ARGV: 1 group, 2 consumer, 3 entry id, 4 action:
-- 'ack', 'touch', 'retry' (then 5: the idle time to set, in ms) or 'dead' (then 5..: the dead
-- letter's field, value pairs). Acts only while the entry is pending with this consumer.
-- Returns 1 when it acted, else the consumer that holds the entry now, or false if none does.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 then return false end
local owner = pending[1][2]
if owner ~= ARGV[2] then return owner end
local action = ARGV[4]
if action == 'ack' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
elseif action == 'touch' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
elseif action == 'retry' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
elseif action == 'dead' then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""

_RECOVER = """
-- KEYS: 1 stream. ARGV: 1 group, 2 consumer, 3 how many, 4.. the ids this consumer holds.
-- Reads only (no delivery is counted): this consumer's pending entries that it does not hold,
-- oldest first, up to ARGV[3], each {id, fields, times delivered}; then the held ids still
-- pending with it, and 1 if those are all of them (every pending entry was looked at).
local wanted, held = tonumber(ARGV[3]), {}
for i = 4, #ARGV do held[ARGV[i]] = true end
local limit = wanted + #ARGV - 3
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', limit, ARGV[2])
local found, still = {}, {}
for _, p in ipairs(pending) do
  if held[p[1]] then
    still[#still + 1] = p[1]
  elseif #found < wanted then
    local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])
    if #entry > 0 then found[#found + 1] = {p[1], entry[1][2], p[4]} end
  end
end
return {found, still, #pending < limit and 1 or 0}
"""

# Told about a valid event given up on because its deliveries kept crashing their workers.
GiveUp = Callable[[AgentEvent, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry handed to this worker; ``attempts`` counts every delivery, this one included."""

    entry_id: str
    event: AgentEvent
    attempts: int


ORIGINAL_FIELDS = "fields"  # the dead letter's field holding the original entry, as JSON


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that a consumer group gave up on, with the reason.

    Its stream entry is written by :meth:`to_fields` and read by :meth:`from_entry`; the
    requeue script reads only :data:`ORIGINAL_FIELDS`, whose name it is passed.
    """

    dead_letter_id: str
    entry_id: str
    group: str
    reason: str
    fields: dict[str, str]
    failed_at: datetime
    route: str = ""  # the route whose stream it was read from ("": the log itself)

    def to_fields(self) -> dict[str, str]:
        return {
            "entry_id": self.entry_id,
            "group": self.group,
            "route": self.route,
            "reason": self.reason[:2000],
            ORIGINAL_FIELDS: json.dumps(self.fields, ensure_ascii=False),
            "failed_at": self.failed_at.isoformat(),
        }

    @classmethod
    def from_entry(cls, dead_letter_id: str, raw: Mapping[Any, Any]) -> DeadLetter:
        data = {as_str(k): as_str(v) for k, v in raw.items()}
        return cls(
            dead_letter_id=dead_letter_id,
            entry_id=data.get("entry_id", ""),
            group=data.get("group", ""),
            reason=data.get("reason", ""),
            fields=json.loads(data.get(ORIGINAL_FIELDS, "{}")),
            failed_at=datetime.fromisoformat(data["failed_at"]),
            route=data.get("route", ""),
        )


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """A consumer group at one moment, read without changing it.

    ``pending``: entries delivered to a consumer and not acknowledged (being worked on, or
    held by a dead consumer until reclaimed); ``consumers``: how many each consumer holds;
    ``oldest_id`` / ``oldest_idle_ms`` / ``oldest_deliveries``: the oldest of them, how long
    since it was last delivered or touched, and how many times it was delivered; ``lag``:
    entries of the stream not yet delivered to the group (None when the server cannot tell,
    after entries were deleted from the middle of the stream); ``last_delivered_id``: the last
    entry the group was given.
    """

    group: str
    pending: int
    consumers: dict[str, int]
    oldest_id: str | None
    oldest_idle_ms: int | None
    oldest_deliveries: int | None
    lag: int | None
    last_delivered_id: str


@translate_errors
class ConsumerGroup:
    """One worker (``consumer``) of a consumer group (``name``) on one stream (the log, or one
    of its routes: ``route`` names it in the dead letters)."""

    def __init__(
        self,
        client: RedisClient,
        *,
        stream_key: str,
        dead_letter_key: str,
        route: str = "",
        name: str,
        consumer: str,
        max_deliveries: int = 5,
        reclaim_idle_ms: int = 30_000,
        on_give_up: GiveUp | None = None,
    ) -> None:
        self.client = client
        self.on_give_up = on_give_up
        self.stream_key = stream_key
        self.route = route
        self.dead_letter_key = dead_letter_key
        self.name = validate_id(name, "group")
        self.consumer = validate_id(consumer, "consumer")
        self.max_deliveries = max_deliveries
        self.reclaim_idle_ms = reclaim_idle_ms
        self._reclaim_pause = min(_MAX_RECLAIM_PAUSE, reclaim_idle_ms / 4000)
        self._next_reclaim = 0.0
        self._settle = LuaScript(client, _SETTLE)
        self._recover_script = LuaScript(client, _RECOVER)
        # Entries delivered to this worker and still its own as far as it knows (in hand, or
        # waiting out a retry's backoff): a recovery after a failed read skips them.
        self._held: set[str] = set()
        self._recover = False  # a read failed: its reply may have held entries now pending

    async def ensure(self, start_id: str = "0") -> None:
        """Create the group (and the stream) unless it exists; new groups start at ``start_id``."""
        try:
            await self.client.xgroup_create(self.stream_key, self.name, start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int = 10, block_ms: int = 1000) -> list[Delivery]:
        """Entries to work on: after a failed read, this worker's own entries whose delivery
        it never received; else reclaimed ones from dead workers; else new ones.

        Blocks up to ``block_ms`` for new entries (``0``: does not block), never failing on a
        healthy server however long that is. Entries that are not valid events, or have been
        delivered more than ``max_deliveries`` times, are dead-lettered here and never
        returned.
        """
        with telemetry.operation(
            "group.read", "redis", "", group=self.name, consumer=self.consumer
        ) as span:
            try:
                entries, attempts = await self._take(count, block_ms)
                deliveries = await self._deliveries(entries, attempts)
            except BaseException:
                self._recover = True  # the entries of a lost reply are pending with this worker
                raise
            self._held.update(delivery.entry_id for delivery in deliveries)
            telemetry.set_attributes(span, {"agentmem.count": len(deliveries)})
            return deliveries

    async def _take(self, count: int, block_ms: int) -> tuple[list[Any], dict[str, int]]:
        """Raw entries and their delivery counts (absent: a first delivery), in read's order."""
        entries: list[Any] = []
        attempts: dict[str, int] = {}
        if self._recover:
            entries, attempts = await self._recover_own(count)
            self._recover = False
            if entries:
                return entries, attempts
        now = time.monotonic()
        if now >= self._next_reclaim:
            entries, attempts = await self._reclaim(count)
            # Look again at once while there is a backlog to take over, else after a pause:
            # a hot loop of reads pays one round trip per read, not two.
            self._next_reclaim = now if entries else now + self._reclaim_pause
        if entries:
            return entries, attempts
        for block in block_slices(self.client, block_ms):
            reply: Any = await self.client.xreadgroup(
                self.name, self.consumer, {self.stream_key: ">"}, count=count, block=block
            )
            entries = [entry for _stream, stream_entries in reply or [] for entry in stream_entries]
            if entries:
                break
        return entries, {}

    async def _deliveries(self, entries: list[Any], attempts: dict[str, int]) -> list[Delivery]:
        deliveries = []
        for raw_id, fields in entries:
            entry_id = as_str(raw_id)
            tries = attempts.get(entry_id, 1)
            try:
                event = AgentEvent.from_fields(entry_id, fields)
            except PoisonMessageError as exc:
                await self._dead_letter(entry_id, fields, str(exc))
                continue
            if tries > self.max_deliveries:
                reason = f"delivered {tries} times and never acknowledged (its worker crashed?)"
                if await self._dead_letter(entry_id, fields, reason) == 1 and self.on_give_up:
                    await self.on_give_up(event, reason)
                continue
            deliveries.append(Delivery(entry_id, event, tries))
        return deliveries

    async def ack(self, delivery: Delivery) -> None:
        """Mark the entry done for this group; call only once its effect is durable.

        Raises :class:`DeliveryLostError`, acknowledging nothing, when the entry is no longer
        this worker's (another reclaimed it, or it was already settled)."""
        with telemetry.operation(
            "group.ack", "redis", "", group=self.name, entry_id=delivery.entry_id
        ):
            await self._act(delivery, "ack")
        self._held.discard(delivery.entry_id)

    async def touch(self, delivery: Delivery) -> None:
        """Reset the entry's idle time: this worker is alive and still on it, so it is not
        reclaimed by another while a long step (an LLM call) is under way.

        Raises :class:`DeliveryLostError` when another worker has reclaimed it meanwhile: the
        entry stays that worker's, and this one should drop the work."""
        await self._act(delivery, "touch")

    async def hand_back(self, delivery: Delivery) -> None:
        """Make an entry this worker holds reclaimable by any other worker now, without
        counting a delivery: a draining worker gives back what it will not finish."""
        await self.set_idle(delivery, self.reclaim_idle_ms)

    async def set_idle(self, delivery: Delivery, idle_ms: int) -> None:
        """Set the entry's idle time (it stays this worker's): another worker reclaims it once
        ``reclaim_idle_ms - idle_ms`` more milliseconds pass without a touch."""
        await self.client.xclaim(
            self.stream_key,
            self.name,
            self.consumer,
            0,
            [delivery.entry_id],
            idle=max(0, idle_ms),
            justid=True,
        )

    async def idle_ms(self, delivery: Delivery) -> int | None:
        """How long the entry has been idle (None: it is no longer pending: acknowledged or
        dead-lettered)."""
        reply: Any = await self.client.xpending_range(
            self.stream_key, self.name, delivery.entry_id, delivery.entry_id, 1
        )
        return int(reply[0]["time_since_delivered"]) if reply else None

    async def fail(self, delivery: Delivery, reason: str, *, final: bool = False) -> bool:
        """Record a failed attempt; returns True when the entry was dead-lettered.

        Unless ``final`` or out of attempts, the entry is retried after a backoff. Raises
        :class:`DeliveryLostError`, changing nothing, when the entry is no longer this
        worker's.
        """
        if final or delivery.attempts >= self.max_deliveries:
            fields = delivery.event.to_fields()
            reply = await self._dead_letter(delivery.entry_id, fields, reason)
            if reply != 1:
                self._lost(delivery, "dead-letter", reply)
            return True
        backoff_ms = min(self.reclaim_idle_ms, _FIRST_RETRY_MS * 2 ** (delivery.attempts - 1))
        await self._act(delivery, "retry", self.reclaim_idle_ms - backoff_ms)
        logger.info(
            "%s failed (attempt %d of %d), retry in %d ms: %s",
            delivery.entry_id,
            delivery.attempts,
            self.max_deliveries,
            backoff_ms,
            reason,
        )
        return False

    async def _act(self, delivery: Delivery, action: str, *args: str | int) -> None:
        """Run one action of the settle script on an entry this worker must still own."""
        reply = await self._settle(
            [self.stream_key, self.dead_letter_key],
            [self.name, self.consumer, delivery.entry_id, action, *args],
        )
        if reply != 1:
            self._lost(delivery, action, reply)

    def _lost(self, delivery: Delivery, action: str, owner: Any = None) -> None:
        self._held.discard(delivery.entry_id)
        now = f"is {as_str(owner)}'s now" if owner else "was already acknowledged or dead-lettered"
        msg = (
            f"cannot {action} entry {delivery.entry_id} of group {self.name!r} as "
            f"{self.consumer!r}: it {now} (this worker stalled past {self.reclaim_idle_ms} ms?); "
            "drop the work without acting on it further"
        )
        raise DeliveryLostError(msg)

    async def pending_summary(self) -> PendingSummary:
        """The group's pending entries and lag (:class:`PendingSummary`), in one round trip;
        nothing is claimed, acknowledged or read. :class:`StoreError` if the group does not
        exist (``ensure()`` creates it)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xinfo_groups(self.stream_key)
            pipe.xpending(self.stream_key, self.name)
            pipe.xpending_range(self.stream_key, self.name, "-", "+", 1)
            groups, summary, oldest = await pipe.execute(raise_on_error=False)
        info = (
            next(
                (g for g in groups if as_str(g["name"]) == self.name),
                None,
            )
            if isinstance(groups, list)
            else None
        )
        if info is None or isinstance(summary, Exception):
            msg = (
                f"consumer group {self.name!r} does not exist on {self.stream_key!r}; "
                "ensure() creates it"
            )
            raise StoreError(msg)
        first = oldest[0] if isinstance(oldest, list) and oldest else None
        lag = info.get("lag")
        return PendingSummary(
            group=self.name,
            pending=int(summary["pending"]),
            consumers={as_str(c["name"]): int(c["pending"]) for c in summary["consumers"]},
            oldest_id=as_str(first["message_id"]) if first else None,
            oldest_idle_ms=int(first["time_since_delivered"]) if first else None,
            oldest_deliveries=int(first["times_delivered"]) if first else None,
            lag=None if lag is None else int(lag),
            last_delivered_id=as_str(info["last-delivered-id"]),
        )

    async def _reclaim(self, count: int) -> tuple[list[Any], dict[str, int]]:
        """Claim entries idle past ``reclaim_idle_ms``; returns them and their delivery counts."""
        reply = await self.client.xautoclaim(
            self.stream_key, self.name, self.consumer, self.reclaim_idle_ms, "0-0", count=count
        )
        claimed = [entry for entry in reply[1] if entry[1] is not None]
        if not claimed:
            return [], {}
        logger.info("reclaimed %d entries from stalled workers", len(claimed))
        return claimed, await self._delivery_counts(claimed)

    async def _recover_own(self, count: int) -> tuple[list[Any], dict[str, int]]:
        """This worker's pending entries that it does not hold (their delivery was lost with a
        reply), and their delivery counts (the lost delivery is the one it gets now)."""
        found, still, complete = await self._recover_script(
            [self.stream_key], [self.name, self.consumer, count, *sorted(self._held)]
        )
        if complete:  # forget held entries that are no longer this worker's
            self._held = {as_str(entry_id) for entry_id in still}
        entries = [(entry_id, _pairs(fields)) for entry_id, fields, _times in found]
        if entries:
            logger.info("recovered %d entries whose delivery reply was lost", len(entries))
        return entries, {as_str(entry_id): int(times) for entry_id, _fields, times in found}

    async def _delivery_counts(self, entries: list[Any]) -> dict[str, int]:
        first, last = as_str(entries[0][0]), as_str(entries[-1][0])
        pending: Any = await self.client.xpending_range(
            self.stream_key, self.name, first, last, len(entries) * 4, self.consumer
        )
        return {as_str(p["message_id"]): int(p["times_delivered"]) for p in pending}

    async def _dead_letter(self, entry_id: str, fields: Any, reason: str) -> Any:
        """Move the entry to the dead-letter stream and acknowledge it, atomically, if it is
        still this worker's; returns the settle script's reply (1: it was)."""
        original = {as_str(k): _text(v) for k, v in fields.items()}
        letter = DeadLetter("", entry_id, self.name, reason, original, utc_now(), self.route)
        pairs = [value for pair in letter.to_fields().items() for value in pair]
        reply = await self._settle(
            [self.stream_key, self.dead_letter_key],
            [self.name, self.consumer, entry_id, "dead", *pairs],
        )
        self._held.discard(entry_id)
        if reply != 1:
            logger.warning("not dead-lettering %s: it is no longer this worker's", entry_id)
        else:
            logger.warning("dead-lettered %s for group %s: %s", entry_id, self.name, reason)
        return reply


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A stream entry's fields, from the flat list a script returns."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
