"""The LLM output models: markdown rendering and the bounds that reject bad answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentmem.agents.documents import Draft
from agentmem.agents.llm_output import Extraction, Paragraph, PlannedSection, SectionDraft
from agentmem.protocol.events import SectionPlan


def test_a_draft_renders_as_markdown_with_its_citations() -> None:
    """The title is a level-2 heading; each paragraph ends with its [F<id>] citations."""
    draft = SectionDraft(
        title="Locks",
        paragraphs=[
            Paragraph(text="Leases expire. ", citations=[3, 7]),
            Paragraph(text="Tokens only grow.", citations=[9]),
        ],
    )

    assert draft.to_markdown() == "## Locks\n\nLeases expire. [F3][F7]\n\nTokens only grow. [F9]\n"


def test_a_stored_draft_carries_its_citations_as_data() -> None:
    """The draft document round-trips with each paragraph's fact ids; no text is parsed."""
    draft = Draft(
        title="Locks",
        paragraphs=[
            Paragraph(text="Leases expire.", citations=[7, 3]),
            Paragraph(text="Tokens only grow.", citations=[3, 9]),
        ],
        section=SectionPlan(section_id="locks", title="Locks"),
        round=1,
    )

    stored = Draft.model_validate(draft.model_dump(mode="json"))

    assert stored == draft
    assert stored.citations == [7, 3, 9]


def test_answers_outside_the_bounds_are_rejected() -> None:
    """Bad section ids, non-positive citations and oversized extractions do not validate."""
    with pytest.raises(ValidationError):
        PlannedSection(section_id="Not A Slug", title="T")
    with pytest.raises(ValidationError):
        Paragraph(text="x", citations=[0])
    with pytest.raises(ValidationError):
        Extraction.model_validate({"sentences": list(range(1, 52))})
    with pytest.raises(ValidationError):
        Extraction.model_validate({"sentences": [0]})


def test_extra_keys_in_an_answer_are_ignored() -> None:
    """A model that adds keys of its own still gives a valid answer."""
    paragraph = Paragraph.model_validate_json('{"text": "t", "citations": [1], "note": "x"}')

    assert paragraph == Paragraph(text="t", citations=[1])
