"""Writes that survive a lost Redis: logged on local disk first, then sent in order.

An agent that loses Redis should keep working on what it can, and lose nothing. Every write
that goes through :class:`DurableWriter` is appended to the agent's
:class:`~memory.wal.WriteAheadLog` (on disk when ``append`` returns), then the log is sent to
Redis oldest first. When Redis is unreachable the write stays in the log and the call returns
anyway; :meth:`DurableWriter.run` sends the backlog once Redis answers again, in the order the
writes were made, and a restarted agent sends what its previous life left behind.

Sending the same entry twice is harmless because every logged write is idempotent: facts carry
idempotency keys and events carry publish keys, so an entry that reached Redis just before the
connection dropped (and was therefore never marked done) is not applied twice on replay.

**One batch in flight.** Entries go out one round trip at a time: a run of consecutive
publishes, or of one agent's ``store_facts`` entries (one script: all or nothing, in order).
Each batch is *confirmed* by :func:`~memory.replication.check_replicated` before anything
logged after it is sent, and leaves the log once confirmed:

- on a primary with a replica: the batch is on the primary, and an online replica has
  acknowledged the primary's offset at which it was seen, in the same replication history;
- on a server that has never shown this writer a replica (a standalone server): the batch is
  on the server. Its own append-only file is all there is (see ``redis_appendfsync``).

Replica presence is read at every confirmation, in the same pipeline as the batch's marks on
a single server. A writer whose first sends found no replica (one resyncing, a primary just
promoted) waits for replicas from the first confirmation that sees one connected, and once it
has seen one it keeps waiting while none is connected: a replica that is down or resyncing
may still be promoted without the latest writes. ``wait_for_replica=True`` waits from the
start; ``False`` never waits for a replica.

**Order through a failover.** Redis replicates a primary's writes in order, so a promoted
replica holds a prefix of its primary's history. A failover could reorder one writer's
entries only if a later entry reached the new primary while an earlier one, sent to the old
primary, was on no replica; since nothing is sent while the batch before it is unconfirmed,
that cannot happen. When a confirmation finds the batch in flight missing (the failover lost
it), the writer sends it and everything logged after it again, in log order, before anything
new (a part of the batch that did arrive is not applied twice: idempotency keys). The stream
therefore holds one writer's events in the order it logged them, each once.

**Cost.** Each batch waits for its confirmation before the next goes out: with a replica,
three round trips (marks and ``INFO``, fence and ``WAIT``, ``INFO``) plus the replica's
acknowledgement; without one, one round trip. While no replica acknowledges (it is down,
resyncing), a writer that waits for replicas sends nothing new: its writes stay in the local
log, the calls return ``False``, and they go out in order once a replica is back. A new
primary (a failover, seen as a new replication history) that has no replica is treated as a
writer's first: its confirmations do not wait until a replica connects to it, since the
replica that was promoted may have been the only one. Waiting is the price of the order:
availability of new writes in Redis for the writer's own entries, never of the agent (it
keeps logging).

**What a failover can still lose.** A batch a replica acknowledged, when another replica
that lacks it is promoted (with two or more replicas). On a server without replicas, what
its own persistence loses in a crash. And a batch confirmed by a writer that has never seen a
replica, if a replica that was disconnected at that moment is promoted later.

**A bad entry** (one the log cannot read, or whose arguments are no valid write) is set aside
in the log's quarantine table with one error line (see :mod:`memory.wal`); the writer goes on
with the next. A full disk refuses the write with :class:`~memory.errors.WalFullError`: the
call raises and nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.errors import InvalidIdError, ServerUnavailableError, WalFullError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.keys import validate_id
from agentmem.memory.replication import Mark, Position, Replication, check_replicated
from agentmem.memory.wal import WalEntry, WriteAheadLog

logger = logging.getLogger(__name__)


_FACTS = "store_facts"
_PUBLISH = "publish"
_PAGE = 100  # entries read from the log at a time, and publishes sent in one round trip


class DurableWriter:
    """Idempotent Redis writes that are durable locally before they are sent, sent in the
    order they were logged, and kept until a replica has them when the primary has replicas."""

    def __init__(
        self,
        memory: RedisAgentMemory,
        events: EventStore,
        wal: WriteAheadLog,
        *,
        wait_for_replica: bool | None = None,
    ) -> None:
        self.memory = memory
        self.events = events
        self.wal = wal
        self.resent = 0  # entries sent again because a failover had lost them (for metrics)
        self._send_lock = anyio.Lock()
        self._backlog = anyio.Event()
        # None: wait for a replica once a confirmation has seen one connected to the primary
        self._wait_for_replica = wait_for_replica
        self._replica_seen_on: str | None = None  # the history (replid) a replica was seen in
        self._last_sent = 0  # entries up to this one were sent by this writer
        self._in_flight: _InFlight | None = None  # sent, not yet confirmed

    async def store_facts(self, agent_id: str, facts: Sequence[NewFact]) -> bool:
        """Store facts (each needs an idempotency key); True if they reached Redis now."""
        for fact in facts:
            if not fact.idempotency_key:
                msg = f"fact {fact.fact[:40]!r} has no idempotency key; a replay could repeat it"
                raise InvalidIdError(msg)
        self.memory.check_facts(agent_id, facts)  # a bad write never enters the log
        if not facts:
            return True
        args = {"agent_id": agent_id, "facts": [asdict(fact) for fact in facts]}
        seq = await self.wal.append(_FACTS, args)
        await self.flush([WalEntry(seq, _FACTS, args)])
        return seq <= self._last_sent

    async def publish(self, event: AgentEvent, *, idempotency_key: str) -> bool:
        """Publish an event at most once per key; True if it reached Redis now."""
        return await self.publish_many([(event, idempotency_key)])

    async def publish_many(self, events: Sequence[tuple[AgentEvent, str]]) -> bool:
        """Publish several ``(event, idempotency_key)`` at most once each, in order, logged in
        one transaction; True if they all reached Redis now. All are checked before any is
        logged, so a bad one leaves nothing behind."""
        items = self._publish_items(events)
        if not items:
            return True
        seqs = await self.wal.append_many(items)
        fresh = [WalEntry(seq, kind, args) for seq, (kind, args) in zip(seqs, items, strict=True)]
        await self.flush(fresh)
        return seqs[-1] <= self._last_sent

    async def publish_later(self, event: AgentEvent, *, idempotency_key: str) -> None:
        """Log an event durably and return without waiting for Redis: :meth:`run` sends it in
        the background, and any later publish or flush sends it first (the log's order is the
        order of sending). For records off the caller's path, such as an LLM call's timing."""
        [item] = self._publish_items([(event, idempotency_key)])
        await self.wal.append_many([item])
        self._backlog.set()

    def _publish_items(
        self, events: Sequence[tuple[AgentEvent, str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        items = []
        for event, idempotency_key in events:
            event.to_fields(self.events.limits)  # a bad event never enters the log
            validate_id(idempotency_key, "idempotency_key")
            args = {"event": event.model_dump(mode="json"), "idempotency_key": idempotency_key}
            items.append((_PUBLISH, args))
        return items

    async def pending(self) -> int:
        """How many writes wait in the local log: not sent yet, or not yet on a replica."""
        return await self.wal.count()

    async def unsent(self) -> int:
        """How many writes have not reached Redis yet (the rest wait for a replica)."""
        in_flight = len(self._in_flight.writes) if self._in_flight else 0
        return await self.wal.count() - in_flight

    async def flush(self, fresh: Sequence[WalEntry] = ()) -> int:
        """Send the log to Redis in order, each batch confirmed before the next; returns how
        many entries are still pending (unsent, or sent but not yet safe).

        ``fresh`` are entries just appended: when they are next in line (no older backlog),
        they are sent as they are, without reading them back from the log, and the flush ends
        once they are confirmed.
        """
        async with self._send_lock:
            try:
                await self._send_in_order(fresh)
            except ServerUnavailableError as exc:
                left = await self.wal.count()
                logger.warning("Redis unreachable (%s); %d writes kept locally", exc, left)
                self._backlog.set()
                return left
            left = await self.wal.count()
            if left:
                self._backlog.set()
            return left

    async def run(self, interval: float = 0.5) -> None:
        """Send any backlog, then keep sending it whenever a write could not go out (or is
        not on a replica yet)."""
        while True:
            self._backlog = anyio.Event()  # set by a write logged during the flush, too
            if await self.flush():
                await anyio.sleep(interval)
                continue
            await self._backlog.wait()

    async def _send_in_order(self, fresh: Sequence[WalEntry]) -> None:
        """Confirm the batch in flight, then send and confirm the next ones, oldest first;
        stop at a batch not yet safe (what follows waits behind it), when the log has nothing
        more, or once ``fresh`` went out and was confirmed."""
        until = fresh[-1].seq if fresh else None
        queue = list(fresh) if fresh and fresh[0].seq == self._last_sent + 1 else []
        while True:
            if self._in_flight is not None:
                if await self._confirm():
                    queue = []  # sent again from the log, from the first lost entry
                if self._in_flight is not None:
                    return
            if until is not None and self._last_sent >= until:
                return
            if not queue:
                queue = await self.wal.pending(limit=_PAGE, after=self._last_sent)
                if not queue:
                    return
            batch, queue = await self._next_batch(queue)
            if batch:
                await self._send(batch)
                self._last_sent = batch[-1].entry.seq
                self._in_flight = _InFlight(batch)

    async def _next_batch(self, queue: list[WalEntry]) -> tuple[list[_Write], list[WalEntry]]:
        """The first batch of ``queue`` (see :func:`_joins`) and the rest; entries that are no
        valid write are set aside on the way."""
        batch: list[_Write] = []
        while queue:
            entry = queue[0]
            try:
                write = self._write(entry)
            except (ValueError, TypeError, KeyError) as exc:
                reason = " ".join(f"not a valid {entry.kind!r} write: {exc}".split())[:300]
                await self.wal.set_aside(entry.seq, reason)
                queue = queue[1:]
                continue
            if batch and not _joins(batch, write):
                break
            batch.append(write)
            queue = queue[1:]
        return batch, queue

    def _write(self, entry: WalEntry) -> _Write:
        """The write a log entry holds, checked as it was when it was logged."""
        args = entry.args
        if entry.kind == _PUBLISH:
            event = AgentEvent.model_validate(args["event"])
            event.to_fields(self.events.limits)
            key = validate_id(args["idempotency_key"], "idempotency_key")
            publish_keys = self.events.keys.publish_keys(self.events.stream)
            return _Write(entry, [Mark(publish_keys, key)], event=(event, key))
        if entry.kind == _FACTS:
            agent_id = args["agent_id"]
            facts = [NewFact(**fact) for fact in args["facts"]]
            self.memory.check_facts(agent_id, facts)
            idempotency = self.memory.keys.idempotency()
            marks = [Mark(idempotency, str(fact.idempotency_key)) for fact in facts]
            return _Write(entry, marks, facts=(agent_id, facts))
        msg = f"unknown kind {entry.kind!r}"
        raise ValueError(msg)

    async def _send(self, batch: list[_Write]) -> None:
        """One round trip, one script: a run of publishes (each at most once by its key), or
        a run of one agent's facts entries (each fact at most once by its key)."""
        if batch[0].facts is not None:
            agent_id = batch[0].facts[0]
            facts = [fact for write in batch if write.facts for fact in write.facts[1]]
            await self.memory.store_facts(agent_id, facts)
            return
        events = [write.event for write in batch if write.event]
        await self.events.publish_keyed(events)
        await self.on_sent([event for event, _key in events])

    async def on_sent(self, events: Sequence[AgentEvent]) -> None:
        """Called once a batch of publishes is in Redis (before it is confirmed), from the
        log or fresh: a subclass announces them here (the pool's tickets). An error raised
        here (a :class:`~memory.errors.ServerUnavailableError`) leaves the batch unsent: it
        goes again on the next flush (a no-op by its keys) and this is called again, so what
        it does must be idempotent or harmless twice."""

    async def _confirm(self) -> bool:
        """Drop the batch in flight from the log once it is safe; if Redis lacks any of it (a
        failover lost it), mark it and all after it unsent. Returns True in that case."""
        flight = self._in_flight
        assert flight is not None
        marks = [mark for write in flight.writes for mark in write.marks]
        fence = self.events.keys.replication_fence()
        seen = await check_replicated(self.events.client, marks, fence)
        self._follow_replicas(seen)
        found = iter(seen.present)
        lost = [write for write in flight.writes if not all([next(found) for _ in write.marks])]
        if lost:
            logger.warning(
                "%d sent writes are missing from Redis (a failover); sending them again, "
                "with everything logged after them",
                len(lost),
            )
            self.resent += len(lost)
            self._last_sent = flight.writes[0].entry.seq - 1
            self._in_flight = None
            return True
        if seen.primary is None:
            return False  # not on a primary (a failover under way): ask again later
        if flight.written_at is None or flight.written_at.replid != seen.primary.replid:
            flight.written_at = seen.primary  # on this primary by now, at or below here
        if self._wait_for_replica and not seen.safe(flight.written_at):
            return False
        try:
            await self.wal.done(*[write.entry.seq for write in flight.writes])
        except WalFullError as exc:
            logger.warning("%s; the sent writes stay in the log until it can drop them", exc)
            return False
        self._in_flight = None
        return False

    def _follow_replicas(self, seen: Replication) -> None:
        """Decide whether confirmations wait for a replica (unless the caller said): from the
        first that sees one connected, until a new primary (a failover: a new replication
        history) has none. The replica that was promoted was the only one the writer knew;
        waiting for another that may never come would stop the writer's sends for good."""
        if self._replica_seen_on is None and self._wait_for_replica is not None:
            return  # the caller decided
        if seen.primary is None:
            return
        if seen.replicas:
            if self._replica_seen_on is None:
                logger.info("the primary has a replica: sent writes now wait until one holds them")
                self._wait_for_replica = True
            self._replica_seen_on = seen.primary.replid
        elif self._replica_seen_on not in {None, seen.primary.replid}:
            logger.warning(
                "a new primary without a replica (a failover): sent writes are confirmed on "
                "it alone until a replica connects"
            )
            self._wait_for_replica = None
            self._replica_seen_on = None


def _joins(batch: list[_Write], write: _Write) -> bool:
    """Can ``write`` go out in the same round trip as ``batch``: a run of publishes, or of
    one agent's facts entries, up to :data:`_PAGE` entries (sent by one script, so all or
    nothing, in order)."""
    last = batch[-1]
    if len(batch) >= _PAGE:
        return False
    if write.event is not None:
        return last.event is not None
    return write.facts is not None and last.facts is not None and write.facts[0] == last.facts[0]


@dataclass(slots=True)
class _Write:
    """A log entry ready to send, and where it leaves its trace in Redis (its idempotency
    records): a publish (``event``) or one agent's facts (``facts``)."""

    entry: WalEntry
    marks: list[Mark]
    event: tuple[AgentEvent, str] | None = None
    facts: tuple[str, list[NewFact]] | None = None


@dataclass(slots=True)
class _InFlight:
    """A batch sent to Redis and not yet confirmed."""

    writes: list[_Write]
    written_at: Position | None = None  # the primary's position once it was seen there
