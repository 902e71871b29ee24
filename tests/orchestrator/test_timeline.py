"""The run's picture: lanes per agent, LLM bars, handoff arrows, marks, trouble in red."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.consumer import DeadLetter
from agentmem.orchestrator.supervisor import Restart
from agentmem.orchestrator.timeline import lanes, timeline_html
from agentmem.protocol.events import (
    AgentFailed,
    EventPayload,
    EventType,
    LLMCalled,
    RunPlanned,
    SectionApproved,
    SectionAssigned,
    SectionDrafted,
    SectionPlan,
    SectionRevisionRequested,
)
from agentmem.protocol.events import new_event as typed_event
from agentmem.protocol.roles import Role

START = datetime(2026, 1, 1, tzinfo=UTC)
LOCKS = SectionPlan(section_id="locks", title="Locks")


def at(seconds: float, kind: EventType, agent: str, payload: EventPayload) -> AgentEvent:
    event = typed_event(kind, agent, payload)
    return event.model_copy(update={"timestamp": START + timedelta(seconds=seconds)})


def drafted(version: int, round_: int) -> SectionDrafted:
    return SectionDrafted(section_id="locks", version=version, round=round_)


def run_events() -> list[AgentEvent]:
    llm = LLMCalled(task="write", model="stub", seconds=0.5, ok=True)
    planned = RunPlanned(topic="t", sections=[LOCKS], fact_count=3)
    failed = AgentFailed(role=Role.WRITER, step="write", error="boom")
    approved = SectionApproved(section_id="locks", version=2, round=1)
    revise = SectionRevisionRequested(section_id="locks", version=1, round=1, comments=["More."])
    return [
        at(0.5, EventType.RUN_PLANNED, "research-1", planned),
        at(0.6, EventType.SECTION_ASSIGNED, "research-1", SectionAssigned(section=LOCKS)),
        at(1.5, EventType.LLM_CALLED, "writer-1", llm),
        at(1.6, EventType.SECTION_DRAFTED, "writer-1", drafted(1, 0)),
        at(2.0, EventType.SECTION_REVISION_REQUESTED, "review-1", revise),
        at(2.2, EventType.AGENT_FAILED, "writer-2", failed),
        at(3.0, EventType.SECTION_DRAFTED, "writer-1", drafted(2, 1)),
        at(3.5, EventType.SECTION_APPROVED, "review-1", approved),
    ]  # fmt: skip


def test_lanes_are_one_per_agent_instance_in_role_order() -> None:
    """Orchestrator, research, writers by number, review; a restarted agent keeps its lane."""
    restarts = [Restart(START, "writer-10", 1)]

    assert lanes(run_events(), restarts) == [
        "research-1",
        "writer-1",
        "writer-2",
        "writer-10",
        "review-1",
    ]


def test_the_picture_shows_calls_handoffs_versions_decisions_and_trouble() -> None:
    """One bar per LLM call, an arrow per change of hands, marks, and red for failures."""
    letter = DeadLetter("9-0", "5-0", "writer", "bad payload", {}, START + timedelta(seconds=3))
    page = timeline_html(
        "run-1", "Locks <b>", run_events(), [letter], [Restart(START, "writer-1", 137)]
    )

    assert page.startswith("<!doctype html>")
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Locks &lt;b&gt;" in page
    assert page.count('class="llm"') == 1
    assert page.count('class="handoff"') == 4  # assigned->drafted->revise->drafted->approved
    assert page.count('class="draft"') == 2
    assert page.count('class="review"') == 2
    assert page.count('class="failure"') == 1
    assert page.count('class="restart"') == 1
    assert page.count('class="dead-letter"') == 1
    assert "dead letters" in page
