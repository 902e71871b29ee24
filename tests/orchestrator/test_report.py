"""The report reads as a document: citations by fact id, framing, sources once, connected prose."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentmem.agents.documents import Draft
from agentmem.agents.llm_output import Paragraph
from agentmem.agents.sentences import numbered
from agentmem.agents.sentences import sentences as split_sentences
from agentmem.agents.stub_llm import extract, write
from agentmem.memory.facts import Fact
from agentmem.orchestrator.compose import (
    cited_facts,
    llm_use,
    section_markdown,
    sources_table,
    summary,
)
from agentmem.orchestrator.report import render_markdown
from agentmem.orchestrator.tracker import LLMTotals, RunState
from agentmem.protocol.events import RunRequested, SectionPlan, SourceDoc

SOURCES = Path(__file__).resolve().parents[2] / "sources"


def fact(fact_id: int, text: str, source: str) -> Fact:
    return Fact(fact_id, text, "s", "research-1", datetime.now(UTC), {"source": source})


def draft(section_id: str, *citations: list[int]) -> Draft:
    paragraphs = [Paragraph(text=f"Text {c}.", citations=c) for c in citations]
    plan = SectionPlan(section_id=section_id, title=section_id.title())
    return Draft(title=plan.title, paragraphs=paragraphs, section=plan, round=0)


def test_citations_name_their_fact_as_every_view_does() -> None:
    """Fact ids 33, 9, 33, 12 across two sections read [F33][F9] and [F33], [F12], as on the
    web page and in inspect; the cited facts are listed once, in reading order."""
    drafts = [draft("a", [33, 9]), draft("b", [33], [12])]

    assert cited_facts(drafts) == [33, 9, 12]
    assert section_markdown(drafts[1]) == "## B\n\nText [33]. [F33]\n\nText [12]. [F12]"
    assert drafts[1].to_markdown().rstrip() == section_markdown(drafts[1])


def test_sources_are_listed_once_with_counts_and_fact_ids_not_their_sentences() -> None:
    """One row per source, in order of first citation, with its facts' ids as ranges."""
    facts = [fact(1, "One.", "b.md"), fact(2, "Two.", "a.md"), fact(3, "Three.", "b.md")]

    rows = sources_table(facts, [2, 1, 3])

    assert rows[2:] == ["| a.md | 1 | F2 |", "| b.md | 2 | F1, F3 |"]
    assert not any("One." in row for row in rows)


def test_the_summary_names_each_sections_facts_without_repeating_them() -> None:
    """Each summary line gives the section's fact ids and the names its facts mention."""
    facts = [
        fact(5, "In 1981 H. T. Kung proposed optimistic concurrency control.", "x.md"),
        fact(6, "PostgreSQL checks versions; PostgreSQL retries need jitter.", "x.md"),
    ]
    lines = summary([draft("occ", [5], [6])], facts)

    assert lines == ["- **Occ** rests on 2 facts [F5-F6], about H. T. Kung and PostgreSQL."]
    assert not any(f.fact in lines[0] for f in facts)


def test_stub_prose_keeps_source_order_and_splits_unrelated_neighbours() -> None:
    """Sentences keep source order; a paragraph never joins sentences sharing no subject word."""
    prose = split_sentences((SOURCES / "05-heartbeats.md").read_text())
    payload_in = {"section_id": "h", "source": {"name": "h.md", "sentences": numbered(prose)}}
    extracted = extract(payload_in).sentences
    facts: list[dict[str, Any]] = [
        {"id": i + 1, "fact": prose[n - 1]} for i, n in enumerate(extracted)
    ]
    payload = {"section": {"title": "H"}, "facts": facts[::-1], "previous": {"version": 1}}

    paragraphs = write(payload).paragraphs

    assert [c for p in paragraphs for c in p.citations] == [f["id"] for f in facts]

    def words(sentence: str) -> set[str]:
        return {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9-]{3,}", sentence)}

    for p in paragraphs:
        sentences = [facts[c - 1]["fact"] for c in p.citations]
        for n, sentence in enumerate(sentences[1:], start=1):
            earlier = set().union(*(words(s) for s in sentences[:n]))
            assert words(sentence) & earlier, sentence


def test_a_planned_section_without_facts_is_named_in_the_report() -> None:
    """The report says no facts were found for the sections left out, by title."""
    state = RunState(topic="Shared memory", planned=True)
    state.without_facts = [
        SectionPlan(section_id="costs", title="Costs"),
        SectionPlan(section_id="history", title="History"),
    ]

    report = render_markdown("r1", state, {}, [])

    assert "No facts were found for “Costs” and “History” in the sources" in report
    assert "no section could be written" in report


def test_the_footer_gives_the_runs_llm_calls_retries_and_token_totals() -> None:
    """One sentence: calls, models, retries, failures, prompt/completion/total tokens."""
    totals = LLMTotals(
        calls=9, failed=1, retries=4, prompt_tokens=12_000, completion_tokens=3_456, seconds=1.0
    )

    assert llm_use(totals, ["smollm2-135m"]) == (
        "The agents made 9 LLM calls on `smollm2-135m` (4 retries, 1 without an answer), "
        "using 12,000 prompt and 3,456 completion tokens (15,456 in all)."
    )


def test_a_submitters_topic_and_source_names_show_as_text_not_markup() -> None:
    """A tag, a heading mark, a table bar or a bracketed citation in a topic or a source's name
    is escaped: the report gets no raw HTML, extra table cell or forged citation from them."""
    name = "evil</td><img src=x onerror=alert(1)>|col [F1]"
    facts = [fact(1, "One.", name)]

    [row] = sources_table(facts, [1])[2:]
    state = RunState(topic="Redis <script>alert(1)</script> # streams")
    title = render_markdown("run-x", state, {}, []).splitlines()[0]

    assert row == r"| evil\</td\>\<img src=x onerror=alert(1)\>\|col \[F1\] | 1 | F1 |"
    assert title == r"# Redis \<script\>alert(1)\</script\> \# streams"


def test_a_source_name_or_topic_of_more_than_one_line_is_refused() -> None:
    """A newline (or any control character) would let a submitter write lines of the report."""
    with pytest.raises(ValidationError, match="one line"):
        SourceDoc(name="a.md\n\n# Injected heading", text="Text.")
    with pytest.raises(ValidationError, match="one line"):
        RunRequested(topic="Redis\n[F1] forged", sources=[SourceDoc(name="a.md", text="Text.")])
