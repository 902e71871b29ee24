"""The pool's roles and routes, and the writer that hands each handoff to its role's queue.

A pooled run uses the run protocol of :mod:`protocol.events` unchanged, with one more route:
the events that move a run towards its end (its plan, a section settled, an agent failed) go
to the ``coordinator`` route, which the coordinator role reads to finish runs. Every routed
handoff is also announced on its role's :class:`~memory.work_queue.WorkQueue` by a ticket
(:class:`TicketingWriter`), once the handoff is in the run's stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from agentmem.memory import AgentEvent, DurableWriter, EventStore, RedisAgentMemory, WriteAheadLog
from agentmem.memory.work_queue import DEFAULT_TENANT, Ticket, WorkQueue
from agentmem.protocol.events import ROUTES, EventType
from agentmem.protocol.roles import Role


class PoolRole(StrEnum):
    """A role a pooled worker serves: the three agent roles, and the coordinator."""

    RESEARCH = "research"
    WRITER = "writer"
    REVIEW = "review"
    COORDINATOR = "coordinator"

    @property
    def agent_role(self) -> Role | None:
        """The agent role (None for the coordinator)."""
        return None if self is PoolRole.COORDINATOR else Role(self.value)


# What the coordinator acts on: events after which a run may be settled or failed.
COORDINATED: frozenset[EventType] = frozenset(
    {
        EventType.RUN_PLANNED,
        EventType.SECTION_APPROVED,
        EventType.SECTION_ROUND_LIMIT,
        EventType.AGENT_FAILED,
    }
)

# The routes of a pooled run: the run protocol's, plus the coordinator's.
POOL_ROUTES: dict[str, str] = {
    **ROUTES,
    **{event_type: PoolRole.COORDINATOR.value for event_type in COORDINATED},
}

POOL_ROLES = frozenset(role.value for role in PoolRole)


class TicketingWriter(DurableWriter):
    """A durable writer that puts a ticket on its role's queue for each handoff once the
    handoff is in the run's stream (one per handoff, so as many workers as handoffs can take
    them at once).

    Tickets go out from :meth:`~memory.durable.DurableWriter.on_sent`, after the batch that
    holds their handoffs reached Redis, whether it was sent at once or later from the local
    log (Redis was unreachable; a restarted worker's log). A ticket is therefore never ahead
    of its handoff: a worker that takes it finds the handoff (or a duplicate's nothing). This
    is simpler than a sweep that re-tickets runs with undelivered handoffs, which could not
    see them anyway: they are in one worker's local log, not in Redis. A push that fails
    leaves the batch unsent; the next flush sends it again (a no-op by its keys) with its
    tickets. A worker that dies between the send and the push has not acknowledged the
    delivery that made the handoff: its redelivery publishes again and tickets again.
    """

    def __init__(
        self,
        memory: RedisAgentMemory,
        events: EventStore,
        wal: WriteAheadLog,
        queues: Mapping[str, WorkQueue],
        issuer: str,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        super().__init__(memory, events, wal)
        self.queues = queues
        self.issuer = issuer
        self.tenant = tenant

    async def on_sent(self, events: Sequence[AgentEvent]) -> None:
        await ticket(self.queues, self.events, events, self.issuer, self.tenant)


async def ticket(
    queues: Mapping[str, WorkQueue],
    events: EventStore,
    published: Sequence[AgentEvent],
    issuer: str,
    tenant: str = DEFAULT_TENANT,
) -> None:
    """Put a ticket on its role's queue (in ``tenant``'s lane) for each routed event of
    ``published``."""
    by_route: dict[str, list[Ticket]] = {}
    for event in published:
        route = events.routes.get(event.event_type)
        if route is not None and route in queues:
            by_route.setdefault(route, []).append(Ticket(events.keys.namespace, route, tenant))
    for route, tickets in by_route.items():
        await queues[route].push(tickets, issuer)
