"""The run's event protocol: every event type on a run's stream and the payload it carries.

One stream per run (the run id is the memory namespace) holds the whole log: requests,
handoffs between roles, and results. Each role reads it through its own consumer group
(``HANDLED_BY``); several processes of one role share the work of that group.

Every event type carries one payload model (:data:`PAYLOADS`): producers build events with
:func:`new_event`, readers get the typed payload back with :func:`parse_payload` (or
:func:`payload_as` when they expect one type). A section's progress through these events is
a :class:`SectionState`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agentmem.memory import AgentEvent, AgentMemoryError
from agentmem.protocol.roles import Role

RUN_STREAM = "run"

# A section id: a lowercase slug; it names the section's documents and its facts' category.
SectionId = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="lowercase slug, e.g. 'locks'")
]


class EventType(StrEnum):
    RUN_REQUESTED = "run.requested"  # orchestrator -> research
    SOURCE_ASSIGNED = "source.assigned"  # research -> research: extract one source's facts
    RUN_PLANNED = "run.planned"  # research -> everyone: the sections to expect
    SECTION_ASSIGNED = "section.assigned"  # research -> writer: facts are stored, write it
    SECTION_DRAFTED = "section.drafted"  # writer -> review: a version is in the draft store
    SECTION_REVISION_REQUESTED = "section.revision_requested"  # review -> writer
    SECTION_APPROVED = "section.approved"  # review -> orchestrator
    SECTION_ROUND_LIMIT = "section.round_limit"  # review -> orchestrator: accepted as is
    AGENT_FAILED = "agent.failed"  # any agent: a step failed for good (shown to the user)
    LLM_CALLED = "llm.called"  # any agent: one LLM call, how long it took (for the run's timings)
    RUN_COMPLETED = "run.completed"  # orchestrator: the report is written
    RUN_FAILED = "run.failed"  # orchestrator: the run stopped without a report
    AUDIT_RECORDED = "audit.recorded"  # the service: a tenant acted on the run (web.audit)


# The events after which a run needs no agent any more: every agent stops when it sees one.
RUN_ENDS: frozenset[EventType] = frozenset({EventType.RUN_COMPLETED, EventType.RUN_FAILED})


class SectionState(StrEnum):
    """Where a section is, as the run's events tell it."""

    WAITING = "waiting"  # planned, not yet handed to a writer
    ASSIGNED = "assigned"  # handed to the writers
    IN_REVIEW = "in review"  # a draft version waits for review
    REVISING = "revising"  # the review asked for a revision
    APPROVED = "approved"  # the review approved a version
    ROUND_LIMIT = "round limit"  # accepted as is after the last review round

    @property
    def settled(self) -> bool:
        """The section is done: approved, or accepted at the round limit."""
        return self in {SectionState.APPROVED, SectionState.ROUND_LIMIT}


# Which event types each role's consumer group acts on (anything else on its route, such as a
# dead letter requeued by hand onto the wrong one, it acknowledges and skips).
HANDLED_BY: dict[Role, frozenset[EventType]] = {
    Role.RESEARCH: frozenset({EventType.RUN_REQUESTED, EventType.SOURCE_ASSIGNED}),
    Role.WRITER: frozenset({EventType.SECTION_ASSIGNED, EventType.SECTION_REVISION_REQUESTED}),
    Role.REVIEW: frozenset({EventType.SECTION_DRAFTED}),
}

END_ROUTE = "end"  # the route every agent follows (without a group) to stop when the run ends

# Where an event goes besides the run's log (see memory.events, "Routes"): a handoff to the
# route its role's consumer group reads (named for the role), the run's end to END_ROUTE. So
# a worker reads the few events it acts on, not every event of the run.
ROUTES: dict[str, str] = {
    **{event_type: role.value for role, types in HANDLED_BY.items() for event_type in types},
    **{event_type: END_ROUTE for event_type in RUN_ENDS},
}


class ProtocolError(AgentMemoryError, ValueError):
    """An event of a type this protocol does not know, or with another type's payload."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventPayload(_Model):
    """The payload of one event type (see :data:`PAYLOADS`)."""


# One line of text: no control character (newline, tab, NUL, DEL, ...). A source's name and a
# run's topic are shown as one line (a heading, a table cell): a newline in either would let a
# submitter write headings or citations of their own into the report.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    bad = _CONTROL.search(value)
    if bad is not None:
        msg = f"must be one line with no control character; {bad.group()!r} at {bad.start()}"
        raise ValueError(msg)
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]


def _no_nul(value: str) -> str:
    at = value.find("\0")
    if at >= 0:
        msg = f"must not contain NUL characters (PostgreSQL cannot store them); one at {at}"
        raise ValueError(msg)
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class SourceDoc(_Model):
    name: OneLine = Field(min_length=1, max_length=256)
    text: Text = Field(min_length=1)


class RunRequested(EventPayload):
    topic: OneLine = Field(min_length=1, max_length=500)
    sources: list[SourceDoc] = Field(min_length=1)


class SourceAssigned(EventPayload):
    """One source to extract facts from, for the section the plan gave it."""

    source: SourceDoc
    section_id: SectionId
    requested_by: str = Field(min_length=1, max_length=256)  # who wrote the source's text


class SectionPlan(_Model):
    """One section of the report, as planned."""

    section_id: SectionId
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)

    @property
    def category(self) -> str:
        """The shared-fact category holding this section's facts."""
        return self.section_id


class RunPlanned(EventPayload):
    topic: str
    sections: list[SectionPlan]  # the sections handed to the writers: those with facts
    fact_count: int = Field(ge=0)
    without_facts: list[SectionPlan] = Field(default_factory=list)  # planned, left out


class SectionAssigned(EventPayload):
    section: SectionPlan
    # How many facts research stored for the section (0: not said). A writer that reads fewer
    # waits a while for the rest: after a Redis failover, lost facts are being resent.
    facts: int = Field(default=0, ge=0)


class SectionDrafted(EventPayload):
    section_id: SectionId
    version: int = Field(ge=1)
    round: int = Field(ge=0)


class SectionRevisionRequested(EventPayload):
    section_id: SectionId
    version: int = Field(ge=1)
    round: int = Field(ge=0)
    comments: list[str]


class SectionApproved(EventPayload):
    """A settled section: approved, or (as ``section.round_limit``) accepted as is."""

    section_id: SectionId
    version: int = Field(ge=1)
    round: int = Field(ge=0)
    comments: list[str] = []


class AgentFailed(EventPayload):
    role: Role
    step: str
    error: str


class LLMCalled(EventPayload):
    """One LLM call an agent made: what for, on which model, how long, and how it ended.

    The agent is the event's ``agent_id``; tokens are summed over the call's attempts, and
    ``outcomes`` has one entry per attempt ("ok", "invalid", "length", "timeout", ...).
    """

    task: str
    model: str
    seconds: float = Field(ge=0)
    queued_seconds: float = Field(default=0.0, ge=0)  # waiting for a place among the run's calls
    ok: bool
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    attempts: int = Field(default=1, ge=0)
    outcomes: list[str] = Field(default_factory=list, max_length=20)


class RunCompleted(EventPayload):
    report_path: str


class RunFailed(EventPayload):
    reason: str = Field(max_length=4000)


class AuditRecorded(EventPayload):
    """Who (tenant, key id: never the key) did what to the run (``submit``, ``requeue``)."""

    tenant: str
    key_id: str | None = None
    action: str
    target: str


# The payload every event type carries: producers and readers both go through this map.
PAYLOADS: dict[EventType, type[EventPayload]] = {
    EventType.RUN_REQUESTED: RunRequested,
    EventType.SOURCE_ASSIGNED: SourceAssigned,
    EventType.RUN_PLANNED: RunPlanned,
    EventType.SECTION_ASSIGNED: SectionAssigned,
    EventType.SECTION_DRAFTED: SectionDrafted,
    EventType.SECTION_REVISION_REQUESTED: SectionRevisionRequested,
    EventType.SECTION_APPROVED: SectionApproved,
    EventType.SECTION_ROUND_LIMIT: SectionApproved,
    EventType.AGENT_FAILED: AgentFailed,
    EventType.AUDIT_RECORDED: AuditRecorded,
    EventType.LLM_CALLED: LLMCalled,
    EventType.RUN_COMPLETED: RunCompleted,
    EventType.RUN_FAILED: RunFailed,
}

P = TypeVar("P", bound=EventPayload)


def new_event(event_type: EventType, agent_id: str, payload: EventPayload) -> AgentEvent:
    """An event of ``event_type`` from ``agent_id``; the payload must be that type's model."""
    expected = PAYLOADS[event_type]
    if type(payload) is not expected:
        msg = (
            f"a {event_type} event carries {expected.__name__}, not {type(payload).__name__}; "
            "see protocol.events.PAYLOADS"
        )
        raise ProtocolError(msg)
    return AgentEvent(
        event_type=event_type, agent_id=agent_id, payload=payload.model_dump(mode="json")
    )


def parse_payload(event: AgentEvent) -> EventPayload:
    """The event's payload as its type's model (ValidationError if it does not fit)."""
    try:
        model = PAYLOADS[EventType(event.event_type)]
    except ValueError as exc:
        msg = f"event {event.event_id} has the unknown type {event.event_type!r}"
        raise ProtocolError(msg) from exc
    return model.model_validate(event.payload)


def payload_as(event: AgentEvent, model: type[P]) -> P:
    """The event's payload, which must be a ``model`` (else ProtocolError)."""
    payload = parse_payload(event)
    if not isinstance(payload, model):
        msg = f"event {event.event_id} is a {event.event_type}, which carries no {model.__name__}"
        raise ProtocolError(msg)
    return payload
