"""Every idempotency key the agents and the orchestrator publish or store with, in one place.

Publishing an event (or storing a fact) again under the same key is a no-op, so a redelivered
handoff repeats none of its effects. A key names the effect, not the attempt: the same
handoff always builds the same key. (The keys of documents in the draft store are in
:mod:`agents.documents`; Redis key names are :mod:`memory.keys`' business.)
"""

from __future__ import annotations

import hashlib
import uuid

from agentmem.protocol.events import EventType
from agentmem.protocol.roles import Role


def source_key(source_name: str) -> str:
    """``source.assigned``: each source of the run is handed to a researcher once."""
    return f"source/{hashlib.sha256(source_name.encode()).hexdigest()[:32]}"


def planned_key() -> str:
    """``run.planned``: the research agent publishes the plan once per run."""
    return "planned"


def assigned_key(section_id: str) -> str:
    """``section.assigned``: each planned section is handed to the writers once."""
    return f"assigned/{section_id}"


def drafted_key(section_id: str, version: int) -> str:
    """``section.drafted``: each draft version is handed to review once."""
    return f"drafted/{section_id}/{version}"


def decision_key(section_id: str, version: int) -> str:
    """The review's decision on one draft version, published once."""
    return f"decision/{section_id}/{version}"


def failed_key(role: Role, event_id: str | None) -> str:
    """``agent.failed``: one report per role per event that failed for good."""
    return f"failed/{role}/{event_id}"


def llm_call_key(agent_id: str, call_id: uuid.UUID) -> str:
    """``llm.called``: every call is its own event (a call made again is another call)."""
    return f"llm/{agent_id}/{call_id.hex}"


def orchestrator_key(event_type: EventType) -> str:
    """The orchestrator's own events: each type once per run."""
    return f"orchestrator/{event_type}"


def fact_key(source_name: str, quote: str) -> str:
    """A fact's idempotency key: the same quote of the same source is the same fact."""
    return hashlib.sha256(f"{source_name}\n{quote}".encode()).hexdigest()
