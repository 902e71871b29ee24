"""Projections: views rebuilt from the event log by folding its events in order.

A projection is the read side of event sourcing: ``initial()`` gives the empty view and
``apply(state, event)`` the view after one more event. :meth:`memory.events.EventStore.replay`
runs one over a whole stream, or from any entry on, so a process that starts late (or
restarts) rebuilds what the others already know from the log alone.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol, TypeVar

from agentmem.memory.agent_event import AgentEvent

S = TypeVar("S")


class Projection(Protocol[S]):
    """A view of the log: an initial state and a pure step function."""

    def initial(self) -> S: ...

    def apply(self, state: S, event: AgentEvent) -> S: ...


class CountByType:
    """How many events of each type the log holds; the smallest useful projection."""

    def initial(self) -> Counter[str]:
        return Counter()

    def apply(self, state: Counter[str], event: AgentEvent) -> Counter[str]:
        state[event.event_type] += 1
        return state
