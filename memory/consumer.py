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

from memory._boundary import translate_errors
from memory._codec import as_str, utc_now
from memory.agent_event import AgentEvent
from memory.connections import RedisClient
from memory.errors import PoisonMessageError, StoreError
from memory.keys import validate_id

logger = logging.getLogger(__name__)

_FIRST_RETRY_MS = 250
_MAX_RECLAIM_PAUSE = 0.25  # seconds between looks for idle entries while new ones keep coming

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

    async def ensure(self, start_id: str = "0") -> None:
        """Create the group (and the stream) unless it exists; new groups start at ``start_id``."""
        try:
            await self.client.xgroup_create(self.stream_key, self.name, start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int = 10, block_ms: int = 1000) -> list[Delivery]:
        """Entries to work on: reclaimed ones from dead workers first, else new ones.

        Blocks up to ``block_ms`` for new entries. Entries that are not valid events, or have
        been delivered more than ``max_deliveries`` times, are dead-lettered here and never
        returned.
        """
        entries: list[Any] = []
        attempts: dict[str, int] = {}
        now = time.monotonic()
        if now >= self._next_reclaim:
            entries, attempts = await self._reclaim(count)
            # Look again at once while there is a backlog to take over, else after a pause:
            # a hot loop of reads pays one round trip per read, not two.
            self._next_reclaim = now if entries else now + self._reclaim_pause
        if not entries:
            reply: Any = await self.client.xreadgroup(
                self.name, self.consumer, {self.stream_key: ">"}, count=count, block=block_ms
            )
            entries = [entry for _stream, stream_entries in reply or [] for entry in stream_entries]
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
                await self._dead_letter(entry_id, fields, reason)
                if self.on_give_up is not None:
                    await self.on_give_up(event, reason)
                continue
            deliveries.append(Delivery(entry_id, event, tries))
        return deliveries

    async def ack(self, delivery: Delivery) -> None:
        """Mark the entry done for this group; call only once its effect is durable."""
        await self.client.xack(self.stream_key, self.name, delivery.entry_id)

    async def touch(self, delivery: Delivery) -> None:
        """Reset the entry's idle time: this worker is alive and still on it, so it is not
        reclaimed by another while a long step (an LLM call) is under way."""
        await self.client.xclaim(
            self.stream_key, self.name, self.consumer, 0, [delivery.entry_id], justid=True
        )

    async def fail(self, delivery: Delivery, reason: str, *, final: bool = False) -> bool:
        """Record a failed attempt; returns True when the entry was dead-lettered.

        Unless ``final`` or out of attempts, the entry is retried after a backoff.
        """
        if final or delivery.attempts >= self.max_deliveries:
            fields = delivery.event.to_fields()
            await self._dead_letter(delivery.entry_id, fields, reason)
            return True
        backoff_ms = min(self.reclaim_idle_ms, _FIRST_RETRY_MS * 2 ** (delivery.attempts - 1))
        await self.client.xclaim(
            self.stream_key,
            self.name,
            self.consumer,
            0,
            [delivery.entry_id],
            idle=self.reclaim_idle_ms - backoff_ms,
            justid=True,
        )
        logger.info(
            "%s failed (attempt %d of %d), retry in %d ms: %s",
            delivery.entry_id,
            delivery.attempts,
            self.max_deliveries,
            backoff_ms,
            reason,
        )
        return False

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
        first, last = as_str(claimed[0][0]), as_str(claimed[-1][0])
        pending: Any = await self.client.xpending_range(
            self.stream_key, self.name, first, last, len(claimed) * 4, self.consumer
        )
        attempts = {as_str(p["message_id"]): int(p["times_delivered"]) for p in pending}
        logger.info("reclaimed %d entries from stalled workers", len(claimed))
        return claimed, attempts

    async def _dead_letter(self, entry_id: str, fields: Any, reason: str) -> None:
        """Move the entry to the dead-letter stream and acknowledge it, atomically."""
        original = {as_str(k): _text(v) for k, v in fields.items()}
        letter = DeadLetter("", entry_id, self.name, reason, original, utc_now(), self.route)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_key, letter.to_fields())  # type: ignore[arg-type]
            pipe.xack(self.stream_key, self.name, entry_id)
            await pipe.execute()
        logger.warning("dead-lettered %s for group %s: %s", entry_id, self.name, reason)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
