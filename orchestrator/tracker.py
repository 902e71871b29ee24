"""The run as the orchestrator sees it: a projection of the run's event log.

:class:`RunTracker` folds events into a :class:`RunState` (the planned sections, each
section's state and draft version, the failures). The orchestrator applies events as they
arrive; ``agentmem inspect`` rebuilds the same state from the log with
:meth:`memory.events.EventStore.replay`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.protocol import EventType, SectionPlan
from memory.agent_event import AgentEvent

SETTLED = ("approved", "round limit")


@dataclass
class SectionState:
    plan: SectionPlan
    state: str = "waiting"
    version: int = 0
    round: int = 0
    agent: str = ""
    revisions: int = 0


@dataclass
class RunState:
    topic: str = ""
    planned: bool = False
    fact_count: int = 0
    sections: dict[str, SectionState] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    report_path: str | None = None
    events: int = 0

    @property
    def done(self) -> bool:
        """Every planned section is approved or accepted at the round limit."""
        return self.planned and all(s.state in SETTLED for s in self.sections.values())


class RunTracker:
    """A :class:`memory.projection.Projection` from the run's events to a :class:`RunState`."""

    def initial(self) -> RunState:
        return RunState()

    def apply(self, state: RunState, event: AgentEvent) -> RunState:
        state.events += 1
        payload, kind = event.payload, event.event_type
        if kind == EventType.RUN_REQUESTED:
            state.topic = payload.get("topic", "")
        elif kind == EventType.RUN_PLANNED:
            state.planned = True
            state.fact_count = int(payload.get("fact_count", 0))
            for raw in payload.get("sections", []):
                plan = SectionPlan.model_validate(raw)
                state.sections.setdefault(plan.section_id, SectionState(plan))
        elif kind == EventType.AGENT_FAILED:
            step, error = payload.get("step"), payload.get("error")
            state.failures.append(f"{event.agent_id} failed at {step}: {error}")
        elif kind == EventType.RUN_COMPLETED:
            state.report_path = payload.get("report_path")
        else:
            section_id = payload.get("section_id") or _assigned_id(payload)
            section = state.sections.get(str(section_id))
            if section is not None:
                section.agent = event.agent_id
                _apply_to_section(section, kind, payload)
        return state


def _apply_to_section(section: SectionState, kind: str, payload: dict[str, Any]) -> None:
    if kind == EventType.SECTION_ASSIGNED and section.state == "waiting":
        section.state = "assigned"
    elif kind == EventType.SECTION_DRAFTED:
        section.state = "in review"
        section.version = max(section.version, payload["version"])
        section.round = payload["round"]
    elif kind == EventType.SECTION_REVISION_REQUESTED:
        section.state = "revising"
        section.revisions += 1
        section.round = payload["round"]
    elif kind == EventType.SECTION_APPROVED:
        section.state, section.version = "approved", payload["version"]
    elif kind == EventType.SECTION_ROUND_LIMIT:
        section.state, section.version = "round limit", payload["version"]


def _assigned_id(payload: dict[str, object]) -> str:
    section = payload.get("section")
    return str(section.get("section_id", "")) if isinstance(section, dict) else ""
