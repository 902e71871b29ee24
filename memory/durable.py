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

**Replicas.** Redis replicates asynchronously, so a write its primary acknowledged can still be
lost: if the primary dies before a replica has it and the replica is promoted (a Redis Cluster
failover), the write is gone from Redis. When the primary owning the namespace has a replica
(asked once, on the first send), an entry therefore stays in the log after it is sent, until
:func:`~memory.replication.check_replicated` sees it on the primary and acknowledged by a
replica; an entry found missing (lost in a failover) is sent again. Sending does not wait for
this: later entries go out meanwhile, and :meth:`DurableWriter.run` keeps checking. While the
primary has no replica in sync (its replica died, or was promoted and has none yet), sent
entries wait in the log until one is. A standalone server without replicas is not waited for:
its own append-only file is all there is (see ``redis_appendfsync``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from memory.agent_memory import RedisAgentMemory
from memory.errors import InvalidIdError, ServerUnavailableError
from memory.events import AgentEvent, EventStore
from memory.facts import NewFact
from memory.keys import validate_id
from memory.replication import Mark, Position, check_replicated, has_replicas
from memory.wal import WalEntry, WriteAheadLog

logger = logging.getLogger(__name__)


_FACTS = "store_facts"
_PUBLISH = "publish"
_CHECK_AT_MOST = 500  # sent entries checked for replication in one round trip (oldest first)
_PAGE = 100  # entries read from the log at a time


class DurableWriter:
    """Idempotent Redis writes that are durable locally before they are sent, and kept until a
    replica has them when the primary has replicas."""

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
        # None: ask the primary (on the first send) whether it has a replica to wait for
        self._wait_for_replica = wait_for_replica
        self._last_sent = 0  # entries up to this one were sent by this writer
        self._unconfirmed: dict[int, _Sent] = {}  # sent, not yet known to be on a replica

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
        return await self._write(_FACTS, args)

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
        return await self.wal.count() - len(self._unconfirmed)

    async def flush(self, fresh: Sequence[WalEntry] = ()) -> int:
        """Send the log to Redis in order, then drop what a replica holds; returns how many
        entries are still pending (unsent, or sent but not yet safe).

        ``fresh`` are entries just appended: when they are next in line (no older backlog),
        they are sent as they are, without reading them back from the log.
        """
        async with self._send_lock:
            try:
                await self._send_new(fresh)
                await self._confirm()
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

    async def _write(self, kind: str, args: dict[str, Any]) -> bool:
        seq = await self.wal.append(kind, args)
        await self.flush([WalEntry(seq, kind, args)])
        return seq <= self._last_sent

    async def _send_new(self, fresh: Sequence[WalEntry] = ()) -> None:
        """Send the entries this writer has not sent yet, oldest first.

        Entries another task appends meanwhile are sent by that task's own flush."""
        if fresh and fresh[-1].seq <= self._last_sent:
            return  # another task's flush sent them meanwhile
        just_appended = bool(fresh) and fresh[0].seq == self._last_sent + 1
        entries = list(fresh) if just_appended else await self._next_page()
        while entries:
            if self._wait_for_replica is None:
                fence = self.events.keys.replication_fence()
                self._wait_for_replica = await has_replicas(self.events.client, fence)
            sent: list[int] = []  # dropped from the log together (one disk sync), below
            try:
                for batch in _batches(entries):
                    await self._send(*batch)
                    for entry in batch:
                        self._last_sent = entry.seq
                        if self._wait_for_replica and entry.kind in (_FACTS, _PUBLISH):
                            self._unconfirmed[entry.seq] = _Sent(entry, self._marks(entry))
                        else:
                            sent.append(entry.seq)
            finally:
                await self.wal.done(*sent)
            if just_appended or len(entries) < _PAGE:
                break
            entries = await self._next_page()

    async def _next_page(self) -> list[WalEntry]:
        return await self.wal.pending(limit=_PAGE, after=self._last_sent)

    async def _confirm(self) -> None:
        """Drop the sent entries a replica holds; send again those a failover lost."""
        if not self._unconfirmed:
            return
        sent = list(self._unconfirmed.values())[:_CHECK_AT_MOST]
        marks = [mark for item in sent for mark in item.marks]
        fence = self.events.keys.replication_fence()
        seen = await check_replicated(self.events.client, marks, fence)
        found = iter(seen.present)
        safe, lost = [], []
        for item in sent:
            present = all([next(found) for _ in item.marks])
            if not present:
                lost.append(item)
                continue
            if seen.primary is not None and (
                item.written_at is None or item.written_at.replid != seen.primary.replid
            ):
                item.written_at = seen.primary  # on this primary by now, at or below here
            if item.written_at is not None and seen.safe(item.written_at):
                safe.append(item.entry.seq)
        await self.wal.done(*safe)
        for seq in safe:
            del self._unconfirmed[seq]
        if lost:
            logger.warning(
                "%d sent writes are missing from Redis (a failover); resending", len(lost)
            )
            for item in lost:
                await self._send(item.entry)
                item.written_at = None
                self.resent += 1

    def _marks(self, entry: WalEntry) -> list[Mark]:
        """Where the entry's write leaves its trace in Redis: its idempotency records."""
        if entry.kind == _FACTS:
            idempotency = self.memory.keys.idempotency()
            return [Mark(idempotency, fact["idempotency_key"]) for fact in entry.args["facts"]]
        publish_keys = self.events.keys.publish_keys(self.events.stream)
        return [Mark(publish_keys, entry.args["idempotency_key"])]

    async def _send(self, *entries: WalEntry) -> None:
        """Send entries of one kind: a run of publishes in one round trip (one script, each
        still at most once by its key), anything else one at a time."""
        if entries and entries[0].kind == _PUBLISH:
            await self.events.publish_keyed(
                [
                    (AgentEvent.model_validate(e.args["event"]), e.args["idempotency_key"])
                    for e in entries
                ]
            )
            return
        for entry in entries:
            args = entry.args
            if entry.kind == _FACTS:
                facts = [NewFact(**fact) for fact in args["facts"]]
                await self.memory.store_facts(args["agent_id"], facts)
            else:
                logger.error("dropping unknown log entry %d of kind %r", entry.seq, entry.kind)


def _batches(entries: Sequence[WalEntry]) -> list[list[WalEntry]]:
    """The entries in order, consecutive publishes grouped (up to :data:`_PAGE`), every other
    entry alone."""
    batches: list[list[WalEntry]] = []
    for entry in entries:
        last = batches[-1] if batches else None
        if last and entry.kind == _PUBLISH == last[-1].kind and len(last) < _PAGE:
            last.append(entry)
        else:
            batches.append([entry])
    return batches


@dataclass(slots=True)
class _Sent:
    """An entry sent to Redis and not yet known to be on a replica."""

    entry: WalEntry
    marks: list[Mark]
    written_at: Position | None = None  # the primary's position once it was seen there
