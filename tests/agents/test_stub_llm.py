"""The stub LLM answers from its input: real quotes, cited facts, computable reviews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentmem.agents.llm_base import LLMError
from agentmem.agents.llm_output import Extraction, Plan, Review, SectionDraft
from agentmem.agents.sentences import numbered, sentences
from agentmem.agents.stub_llm import StubLLM

pytestmark = pytest.mark.anyio

SOURCES = Path(__file__).resolve().parents[2] / "sources"


def source(name: str) -> dict[str, str]:
    return {"name": name, "text": (SOURCES / name).read_text()}


async def extract(llm: StubLLM, name: str) -> Extraction:
    text = numbered(sentences(source(name)["text"]))
    payload = {"topic": "t", "section_id": "s", "source": {"name": name, "sentences": text}}
    return await llm.generate(task="extract", instructions="", payload=payload, output=Extraction)


async def fact_texts(llm: StubLLM, name: str) -> list[str]:
    """The sentences the stub chose from a source, as the research agent stores them."""
    prose = sentences(source(name)["text"])
    return [prose[n - 1] for n in (await extract(llm, name)).sentences]


async def test_extracted_facts_are_verbatim_quotes_of_their_own_source() -> None:
    """Each fact names a distinct sentence of its source; different sources, different facts."""
    llm = StubLLM()
    streams = await extract(llm, "01-redis-streams.md")
    locks = await extract(llm, "02-locks-and-fencing.md")
    prose = sentences(source("01-redis-streams.md")["text"])

    assert len(streams.sentences) >= 4
    assert all(1 <= n <= len(prose) for n in streams.sentences)
    assert len(set(streams.sentences)) == len(streams.sentences)
    assert streams != locks
    assert streams == await extract(llm, "01-redis-streams.md")


async def test_the_plan_has_one_section_per_source_titled_by_its_heading() -> None:
    """Section titles come from the sources' headings, ids are unique slugs."""
    sources = [source(p.name) for p in sorted(SOURCES.glob("*.md"))]
    plan = await StubLLM().generate(
        task="plan", instructions="", payload={"topic": "t", "sources": sources}, output=Plan
    )

    assert next(s.title for s in plan.sections) == "Redis Streams and consumer groups"
    assert len({s.section_id for s in plan.sections}) == len(sources)
    assert [s.sources for s in plan.sections] == [[s["name"]] for s in sources]


async def test_a_partial_first_draft_is_sent_back_and_its_revision_approved() -> None:
    """The first draft misses facts, the review names them, the revision covers them."""
    llm = StubLLM()
    facts: list[dict[str, Any]] = [
        {"id": 10 + i, "fact": text, "source": "s"}
        for i, text in enumerate(await fact_texts(llm, "02-locks-and-fencing.md"))
    ]
    section = {"section_id": "locks", "title": "Locks", "description": ""}
    payload: dict[str, Any] = {"topic": "t", "section": section, "facts": facts, "previous": None}

    first = await llm.generate(
        task="write", instructions="", payload={**payload, "comments": []}, output=SectionDraft
    )
    verdict = await llm.generate(
        task="review",
        instructions="",
        output=Review,
        payload={"section": section, "facts": facts, "draft": first.model_dump(), "round": 0},
    )
    cited = {c for p in first.paragraphs for c in p.citations}
    assert cited < {f["id"] for f in facts}
    assert not verdict.approved
    missing = sorted({f["id"] for f in facts} - cited)
    assert all(f"[F{i}]" in verdict.comments[-1] for i in missing)

    revised = await llm.generate(
        task="write",
        instructions="",
        output=SectionDraft,
        payload={
            **payload,
            "previous": {"markdown": first.to_markdown(), "version": 1},
            "comments": verdict.comments,
        },
    )
    second = await llm.generate(
        task="review",
        instructions="",
        output=Review,
        payload={"section": section, "facts": facts, "draft": revised.model_dump(), "round": 1},
    )
    assert second.approved, second.comments
    assert "[F10]" in revised.to_markdown()


async def test_a_draft_citing_facts_of_another_section_is_not_approved() -> None:
    """Citations outside the section's facts are named in the review."""
    facts = [{"id": 1, "fact": "A fact that is long enough to count here.", "source": "s"}]
    draft = {
        "title": "T",
        "paragraphs": [{"text": "Some claim that is long enough.", "citations": [99]}],
    }

    verdict = await StubLLM().generate(
        task="review",
        instructions="",
        output=Review,
        payload={"section": {}, "facts": facts, "draft": draft, "round": 0},
    )

    assert not verdict.approved
    assert any("[99]" in c for c in verdict.comments)


async def test_a_draft_cites_only_the_facts_it_was_given_and_states_them() -> None:
    """Citations are the given ids, and each cited fact's text is in its paragraph."""
    llm = StubLLM()
    facts: list[dict[str, Any]] = [
        {"id": 40 + i, "fact": text, "source": "s"}
        for i, text in enumerate(await fact_texts(llm, "05-heartbeats.md"))
    ]
    by_id = {f["id"]: f["fact"] for f in facts}
    payload = {
        "topic": "t",
        "section": {"section_id": "h", "title": "Heartbeats", "description": ""},
        "facts": facts,
        "previous": None,
        "comments": [],
        "extra": "ignored",
    }

    draft = await llm.generate(task="write", instructions="", payload=payload, output=SectionDraft)

    assert draft.title == "Heartbeats"
    for paragraph in draft.paragraphs:
        assert 1 <= len(paragraph.citations) <= 3
        assert all(by_id[c].rstrip(".") in paragraph.text for c in paragraph.citations)
    assert draft == await llm.generate(
        task="write", instructions="", payload=payload, output=SectionDraft
    )


async def test_an_unknown_task_is_an_llm_error() -> None:
    """The stub refuses tasks it does not know instead of inventing an answer."""
    with pytest.raises(LLMError, match="summarise"):
        await StubLLM().generate(task="summarise", instructions="", payload={}, output=Review)
