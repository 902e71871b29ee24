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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import anyio

from memory.agent_memory import RedisAgentMemory
from memory.errors import InvalidIdError, ServerUnavailableError
from memory.events import AgentEvent, EventStore
from memory.facts import NewFact
from memory.keys import validate_id
from memory.wal import WalEntry, WriteAheadLog

logger = logging.getLogger(__name__)


_FACTS = "store_facts"
_PUBLISH = "publish"


class DurableWriter:
    """Idempotent Redis writes that are durable locally before they are sent."""

    def __init__(self, memory: RedisAgentMemory, events: EventStore, wal: WriteAheadLog) -> None:
        self.memory = memory
        self.events = events
        self.wal = wal
        self._send_lock = anyio.Lock()
        self._backlog = anyio.Event()

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
        event.to_fields(self.events.limits)  # a bad event never enters the log
        validate_id(idempotency_key, "idempotency_key")
        args = {"event": event.model_dump(mode="json"), "idempotency_key": idempotency_key}
        return await self._write(_PUBLISH, args)

    async def pending(self) -> int:
        """How many writes wait in the local log for Redis."""
        return await self.wal.count()

    async def flush(self) -> int:
        """Send the log to Redis in order; returns how many entries are still pending."""
        async with self._send_lock:
            while entries := await self.wal.pending(limit=100):
                for entry in entries:
                    try:
                        await self._send(entry)
                    except ServerUnavailableError as exc:
                        left = await self.wal.count()
                        logger.warning("Redis unreachable (%s); %d writes kept locally", exc, left)
                        self._backlog.set()
                        return left
                    await self.wal.done(entry.seq)
            return 0

    async def run(self, interval: float = 0.5) -> None:
        """Send any backlog, then keep sending it whenever a write could not go out."""
        while True:
            if await self.flush():
                await anyio.sleep(interval)
                continue
            self._backlog = anyio.Event()
            await self._backlog.wait()

    async def _write(self, kind: str, args: dict[str, Any]) -> bool:
        await self.wal.append(kind, args)
        return await self.flush() == 0

    async def _send(self, entry: WalEntry) -> None:
        args = entry.args
        if entry.kind == _FACTS:
            facts = [NewFact(**fact) for fact in args["facts"]]
            await self.memory.store_facts(args["agent_id"], facts)
        elif entry.kind == _PUBLISH:
            event = AgentEvent.model_validate(args["event"])
            await self.events.publish(event, idempotency_key=args["idempotency_key"])
        else:
            logger.error("dropping unknown log entry %d of kind %r", entry.seq, entry.kind)
