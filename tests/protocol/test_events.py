"""The event protocol: one payload model per event type, for producers and readers alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentmem.memory.agent_event import AgentEvent
from agentmem.protocol.events import (
    EventType,
    ProtocolError,
    SectionApproved,
    SectionDrafted,
    SectionState,
    new_event,
    parse_payload,
    payload_as,
)


def test_an_event_reads_back_as_the_payload_model_of_its_type() -> None:
    """What a producer built is what a reader parses, typed."""
    drafted = SectionDrafted(section_id="locks", version=2, round=1)
    event = new_event(EventType.SECTION_DRAFTED, "writer-1", drafted)

    assert parse_payload(event) == drafted
    assert payload_as(event, SectionDrafted) == drafted


def test_an_event_cannot_carry_another_types_payload() -> None:
    """Building or reading an event with the wrong payload model is a ProtocolError."""
    drafted = SectionDrafted(section_id="locks", version=2, round=1)
    event = new_event(EventType.SECTION_DRAFTED, "writer-1", drafted)

    with pytest.raises(ProtocolError, match=r"section\.approved event carries SectionApproved"):
        new_event(EventType.SECTION_APPROVED, "review-1", drafted)
    with pytest.raises(ProtocolError, match="carries no SectionApproved"):
        payload_as(event, SectionApproved)


def test_unknown_types_and_bad_payloads_are_refused() -> None:
    """An unknown type is a ProtocolError; a payload that does not fit, a ValidationError."""
    with pytest.raises(ProtocolError, match="unknown type"):
        parse_payload(AgentEvent(event_type="section.lost", agent_id="x"))
    with pytest.raises(ValidationError):
        parse_payload(
            AgentEvent(event_type="section.drafted", agent_id="x", payload={"section_id": "a"})
        )


def test_only_approved_and_round_limit_sections_are_settled() -> None:
    """Settled means approved or accepted at the round limit; every other state is pending."""
    assert {s for s in SectionState if s.settled} == {
        SectionState.APPROVED,
        SectionState.ROUND_LIMIT,
    }
