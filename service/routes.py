"""The pool's roles and routes, and the writer that hands each handoff to its role's queue.

A pooled run uses the run protocol of :mod:`agents.protocol` unchanged, with one more route:
the events that move a run towards its end (its plan, a section settled, an agent failed) go
to the ``coordinator`` route, which the coordinator role reads to finish runs. Every routed
handoff is also announced on its role's :class:`~memory.work_queue.WorkQueue` by a ticket
(:class:`TicketingWriter`), right after the handoff is published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from agents.protocol import ROUTES, EventType
from agents.roles import Role
from memory import AgentEvent, DurableWriter, EventStore, RedisAgentMemory, WriteAheadLog
from memory.work_queue import DEFAULT_TENANT, Ticket, WorkQueue


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
    """A durable writer that, after publishing handoffs, puts a ticket for each on its role's
    queue (one per handoff, so as many workers as handoffs can take them at once).

    A ticket goes out after its handoff's publish returned: a worker that dies in between
    leaves its own handoff pending, and its redelivery publishes again (a no-op, by key) and
    tickets again. A handoff that the writer had to keep in its local log (Redis unreachable)
    is ticketed now, before it reaches the stream: a worker that takes that ticket first finds
    nothing and acknowledges it (a known gap, see docs/service.md).
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

    async def publish_many(self, events: Sequence[tuple[AgentEvent, str]]) -> bool:
        sent = await super().publish_many(events)
        published = [event for event, _key in events]
        await ticket(self.queues, self.events, published, self.issuer, self.tenant)
        return sent


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
