"""The run as the orchestrator sees it: a projection of the run's event log.

:class:`RunTracker` folds events into a :class:`RunState` (the planned sections, each
section's state and draft version, the failures). The orchestrator applies events as they
arrive; ``agentmem inspect`` rebuilds the same state from the log with
:meth:`memory.events.EventStore.replay`, and the web view folds it the same way.

The memory layer stores any payload under any type, so the fold meets events it cannot read:
one of a type this version does not know is counted and skipped (a newer agent's), and one of
a known type whose payload does not fit that type's model is counted, skipped and listed in
:attr:`RunState.malformed`, for every view of the run to show. Neither stops the fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from agentmem.memory import AgentEvent
from agentmem.protocol import EventType, SectionState, parse_payload
from agentmem.protocol.events import (
    AgentFailed,
    LLMCalled,
    ProtocolError,
    RunCompleted,
    RunPlanned,
    RunRequested,
    SectionApproved,
    SectionAssigned,
    SectionDrafted,
    SectionPlan,
    SectionRevisionRequested,
)


@dataclass
class SectionProgress:
    plan: SectionPlan
    state: SectionState = SectionState.WAITING
    version: int = 0
    round: int = 0
    agent: str = ""
    revisions: int = 0


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One LLM call as its ``llm.called`` event recorded it."""

    agent: str
    task: str
    model: str
    attempts: int
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    queued_seconds: float
    outcome: str  # "ok", or how its last attempt ended ("invalid", "length", "timeout", ...)

    @classmethod
    def from_event(cls, agent: str, call: LLMCalled) -> LLMCall:
        last = call.outcomes[-1] if call.outcomes else ("ok" if call.ok else "failed")
        return cls(
            agent=agent,
            task=call.task,
            model=call.model,
            attempts=call.attempts,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            seconds=call.seconds,
            queued_seconds=call.queued_seconds,
            outcome="ok" if call.ok else last,
        )


@dataclass(frozen=True, slots=True)
class LLMTotals:
    """What the run's LLM calls added up to."""

    calls: int
    failed: int
    retries: int  # attempts beyond each call's first
    prompt_tokens: int
    completion_tokens: int
    seconds: float


@dataclass
class RunState:
    topic: str = ""
    planned: bool = False
    fact_count: int = 0
    sections: dict[str, SectionProgress] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    without_facts: list[SectionPlan] = field(default_factory=list)  # planned, but no facts
    report_path: str | None = None
    events: int = 0
    llm_seconds: dict[str, float] = field(default_factory=dict)  # per agent, from llm.called
    llm_calls: list[LLMCall] = field(default_factory=list)  # in the order they were recorded
    malformed: list[str] = field(default_factory=list)  # known type, payload that does not fit

    @property
    def llm_totals(self) -> LLMTotals:
        """Calls, failures, retries, tokens and seconds over every LLM call so far."""
        calls = self.llm_calls
        return LLMTotals(
            calls=len(calls),
            failed=sum(c.outcome != "ok" for c in calls),
            retries=sum(max(0, c.attempts - 1) for c in calls),
            prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
            completion_tokens=sum(c.completion_tokens or 0 for c in calls),
            seconds=sum(c.seconds for c in calls),
        )

    @property
    def done(self) -> bool:
        """Every planned section is approved or accepted at the round limit."""
        return self.planned and all(s.state.settled for s in self.sections.values())

    @property
    def unsettled(self) -> list[str]:
        """The ids of the planned sections that are not settled yet."""
        return [i for i, s in self.sections.items() if not s.state.settled]


class RunTracker:
    """A :class:`memory.projection.Projection` from the run's events to a :class:`RunState`."""

    def initial(self) -> RunState:
        return RunState()

    def apply(self, state: RunState, event: AgentEvent) -> RunState:
        state.events += 1
        try:
            payload = parse_payload(event)
        except ProtocolError:  # a type this version does not know: counted, not applied
            return state
        except ValidationError as exc:  # a known type that does not fit: listed, not applied
            state.malformed.append(malformed(event, exc))
            return state
        match payload:
            case RunRequested(topic=topic):
                state.topic = topic
            case RunPlanned(sections=sections, fact_count=fact_count):
                state.planned, state.fact_count = True, fact_count
                state.without_facts = list(payload.without_facts)
                for plan in sections:
                    state.sections.setdefault(plan.section_id, SectionProgress(plan))
            case AgentFailed(step=step, error=error):
                state.failures.append(f"{event.agent_id} failed at {step}: {error}")
            case LLMCalled(seconds=seconds):
                state.llm_seconds[event.agent_id] = (
                    state.llm_seconds.get(event.agent_id, 0.0) + seconds
                )
                state.llm_calls.append(LLMCall.from_event(event.agent_id, payload))
            case RunCompleted(report_path=report_path):
                state.report_path = report_path
            case SectionAssigned(section=plan):
                _apply_to_section(state, event, plan.section_id, payload)
            case SectionDrafted() | SectionRevisionRequested() | SectionApproved():
                _apply_to_section(state, event, payload.section_id, payload)
        return state


def malformed(event: AgentEvent, exc: ValidationError) -> str:
    """One line on an event whose payload does not fit its type: which, by whom, and why."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return (
        f"{event.event_id or '?'} {event.event_type} by {event.agent_id}: {where}: "
        f"{first['msg']} ({exc.error_count()} error(s))"
    )


def _apply_to_section(
    state: RunState,
    event: AgentEvent,
    section_id: str,
    payload: SectionAssigned | SectionDrafted | SectionRevisionRequested | SectionApproved,
) -> None:
    section = state.sections.get(section_id)
    if section is None:
        return
    section.agent = event.agent_id
    match payload:
        case SectionAssigned() if section.state == SectionState.WAITING:
            section.state = SectionState.ASSIGNED
        case SectionDrafted(version=version, round=round_):
            section.state = SectionState.IN_REVIEW
            section.version = max(section.version, version)
            section.round = round_
        case SectionRevisionRequested(round=round_):
            section.state = SectionState.REVISING
            section.revisions += 1
            section.round = round_
        case SectionApproved(version=version):
            approved = event.event_type == EventType.SECTION_APPROVED
            section.state = SectionState.APPROVED if approved else SectionState.ROUND_LIMIT
            section.version = version
