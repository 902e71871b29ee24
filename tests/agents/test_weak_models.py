"""What the agents do when a weak model gives no usable answer: the run still ends."""

from __future__ import annotations

from datetime import UTC, datetime

from agentmem.agents.llm_output import Extraction, Plan
from agentmem.agents.writer import facts_draft
from agentmem.memory.facts import Fact
from agentmem.protocol.events import SectionPlan

SECTION = SectionPlan(section_id="locks", title="Locks")


def fact(fact_id: int, text: str) -> Fact:
    return Fact(
        id=fact_id,
        fact=text,
        category="locks",
        agent_id="research-1",
        timestamp=datetime.now(UTC),
        metadata={"source": "02-locks.md", "quote": text},
    )


def test_a_section_drafted_from_its_facts_cites_each_one() -> None:
    """Without a draft from the LLM, each fact becomes a paragraph citing it."""
    draft = facts_draft(SECTION, [fact(3, "Leases expire."), fact(7, "Tokens only grow.")])

    assert draft.title == "Locks"
    assert [(p.text, p.citations) for p in draft.paragraphs] == [
        ("Leases expire.", [3]),
        ("Tokens only grow.", [7]),
    ]


def test_a_section_without_facts_says_so() -> None:
    """A section with no facts gets a draft that says the sources gave none."""
    draft = facts_draft(SECTION, [])

    assert "no usable fact about Locks" in draft.paragraphs[0].text


def test_repeated_sections_and_facts_are_de_duplicated_not_rejected() -> None:
    """A small model's repetitions are repaired: unique section ids, one fact per sentence."""
    plan = Plan.model_validate(
        {
            "sections": [
                {"section_id": "locks", "title": "Locks"},
                {"section_id": "locks", "title": "Fencing"},
                {"section_id": "Bad Id!", "title": "Locks"},
                {"section_id": "Bad Id!", "title": "Leases and TTLs"},
            ]
        }
    )
    extraction = Extraction.model_validate({"sentences": [2, 2, 5, 2]})

    assert [s.section_id for s in plan.sections] == ["locks", "locks-2", "bad-id"]
    assert extraction.sentences == [2, 5]
