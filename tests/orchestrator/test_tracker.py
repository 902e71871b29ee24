"""The run's state, folded from its typed events."""

from __future__ import annotations

from agentmem.memory.agent_event import AgentEvent
from agentmem.orchestrator.progress import InFlight, llm_line
from agentmem.orchestrator.tracker import RunTracker
from agentmem.protocol.events import (
    EventPayload,
    EventType,
    LLMCalled,
    RunPlanned,
    SectionApproved,
    SectionAssigned,
    SectionDrafted,
    SectionPlan,
    SectionRevisionRequested,
    SectionState,
    new_event,
)

LOCKS = SectionPlan(section_id="locks", title="Locks")
STREAMS = SectionPlan(section_id="streams", title="Streams")


def event(kind: EventType, agent: str, payload: EventPayload) -> AgentEvent:
    return new_event(kind, agent, payload)


def test_sections_settle_by_approval_or_round_limit_and_llm_time_is_totalled() -> None:
    """Both sections end settled; LLM seconds are summed per agent; unknown types are skipped."""
    tracker = RunTracker()
    state = tracker.initial()
    log = [
        event(
            EventType.RUN_PLANNED,
            "research-1",
            RunPlanned(topic="t", sections=[LOCKS, STREAMS], fact_count=3),
        ),
        event(EventType.SECTION_ASSIGNED, "research-1", SectionAssigned(section=LOCKS)),
        event(
            EventType.LLM_CALLED,
            "writer-1",
            LLMCalled(task="write", model="m", seconds=1.5, ok=True),
        ),
        event(
            EventType.SECTION_DRAFTED,
            "writer-1",
            SectionDrafted(section_id="locks", version=1, round=0),
        ),
        event(
            EventType.SECTION_REVISION_REQUESTED,
            "review-1",
            SectionRevisionRequested(section_id="locks", version=1, round=1, comments=[]),
        ),
        event(
            EventType.LLM_CALLED,
            "writer-1",
            LLMCalled(task="write", model="m", seconds=0.5, ok=False),
        ),
        event(
            EventType.SECTION_APPROVED,
            "review-1",
            SectionApproved(section_id="locks", version=2, round=1),
        ),
        AgentEvent(event_type="future.event", agent_id="x"),
    ]
    for entry in log:
        tracker.apply(state, entry)

    assert state.sections["locks"].state == SectionState.APPROVED
    assert state.sections["locks"].revisions == 1
    assert state.unsettled == ["streams"]
    assert not state.done
    assert state.llm_seconds == {"writer-1": 2.0}

    limit = SectionApproved(section_id="streams", version=3, round=2)
    tracker.apply(state, event(EventType.SECTION_ROUND_LIMIT, "review-1", limit))

    assert state.sections["streams"].state == SectionState.ROUND_LIMIT
    assert state.done
    assert state.events == len(log) + 1


def test_llm_calls_are_listed_and_totalled_with_retries_and_tokens() -> None:
    """Each llm.called becomes a listed call; totals count retries, failures and tokens."""
    tracker = RunTracker()
    state = tracker.initial()
    calls = [
        LLMCalled(
            task="extract",
            model="m",
            seconds=3.0,
            queued_seconds=1.5,
            ok=True,
            prompt_tokens=100,
            completion_tokens=20,
            attempts=2,
            outcomes=["length", "ok"],
        ),
        LLMCalled(
            task="write",
            model="m",
            seconds=4.0,
            ok=False,
            prompt_tokens=50,
            completion_tokens=None,
            attempts=3,
            outcomes=["invalid", "invalid", "timeout"],
        ),
    ]
    for agent, call in zip(("research-1", "writer-1"), calls, strict=True):
        tracker.apply(state, event(EventType.LLM_CALLED, agent, call))

    listed = [(c.agent, c.task, c.attempts, c.outcome) for c in state.llm_calls]
    assert listed == [("research-1", "extract", 2, "ok"), ("writer-1", "write", 3, "timeout")]
    assert state.llm_calls[0].queued_seconds == 1.5
    totals = state.llm_totals
    assert (totals.calls, totals.failed, totals.retries) == (2, 1, 3)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.seconds) == (150, 20, 7.0)


def test_the_live_tables_llm_line_shows_calls_in_flight_retries_and_tokens() -> None:
    """The progress line reads calls in flight against the cap, done, retries and tokens."""
    tracker = RunTracker()
    state = tracker.initial()
    call = LLMCalled(
        task="plan",
        model="m",
        seconds=1.0,
        ok=True,
        prompt_tokens=1880,
        completion_tokens=297,
        attempts=2,
        outcomes=["timeout", "ok"],
    )
    tracker.apply(state, event(EventType.LLM_CALLED, "research-1", call))

    assert llm_line(state, InFlight(calls=2, limit=2)) == (
        "LLM calls: 2 in flight (cap 2), 1 done, 1 retries, 0 failed, "
        "tokens 1,880 prompt + 297 completion"
    )
