"""What the LLM produces for each task, as pydantic models (the output contracts).

The agents never parse free text: each LLM call names one of these models, and its output
is validated against it (and retried, within bounds, when it does not fit). Small models
repeat themselves, so repetition is repaired here rather than failed: duplicate section ids
get a suffix, a repeated fact or paragraph is dropped.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentmem.protocol.events import SectionPlan

FactId = Annotated[int, Field(ge=1)]


def citation_label(fact_id: int) -> str:
    """``F25``: how every view names fact 25 (report, web page, inspect, prompts)."""
    return f"F{fact_id}"


def citation(fact_id: int) -> str:
    """``[F25]``: a citation of fact 25, the same in the report, the web view and inspect."""
    return f"[{citation_label(fact_id)}]"


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlannedSection(SectionPlan):
    """One section of the report (a :class:`SectionPlan`), and the sources that feed it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sources: list[str] = Field(default_factory=list, description="names of the sources used")

    def plan(self) -> SectionPlan:
        """The section as the protocol carries it (without its sources)."""
        return SectionPlan.model_validate(self.model_dump(exclude={"sources"}))


class Plan(_Output):
    """task "plan": the report's sections."""

    sections: list[PlannedSection] = Field(min_length=1, max_length=20)

    @field_validator("sections", mode="before")
    @classmethod
    def _unique_sections(cls, value: Any) -> Any:
        """Slug each section id and make it unique; drop a section whose title repeats."""
        if not isinstance(value, list):
            return value
        taken: set[str] = set()
        titles: set[str] = set()
        sections = []
        for item in value:
            if not isinstance(item, dict):
                sections.append(item)
                continue
            title = str(item.get("title", "")).strip()
            if title.casefold() in titles:
                continue
            titles.add(title.casefold())
            slug = _slug(str(item.get("section_id") or title))
            candidate, n = slug, 2
            while candidate in taken:
                candidate, n = f"{slug[:60]}-{n}", n + 1
            taken.add(candidate)
            sections.append({**item, "section_id": candidate})
        return sections


SentenceNumber = Annotated[int, Field(ge=1)]


class Extraction(_Output):
    """task "extract": the facts one source states, as the numbers of their sentences.

    The model picks sentences rather than copying or restating them: the agent stores each
    source sentence itself, so every fact is verbatim by construction (a small model's
    restatements drifted from their quotes), and an answer costs a few tokens per fact (the
    section is the one the source was assigned to, so the model is not asked for it).
    """

    sentences: list[SentenceNumber] = Field(
        default_factory=list,
        max_length=50,
        description="numbers of the source sentences that state facts, most informative first",
    )

    @field_validator("sentences", mode="before")
    @classmethod
    def _each_sentence_once(cls, value: Any) -> Any:
        """Drop a sentence already chosen (small models repeat themselves)."""
        return list(dict.fromkeys(value)) if isinstance(value, list) else value


class Paragraph(_Output):
    """A paragraph of a section and the ids of the facts it rests on."""

    text: str = Field(min_length=1, max_length=4000)
    citations: list[FactId] = Field(
        default_factory=list, max_length=50, description="fact ids, e.g. [3, 7]"
    )

    @field_validator("citations", mode="before")
    @classmethod
    def _cite_once(cls, value: Any) -> Any:
        """Each fact id once, in order of first citation."""
        return list(dict.fromkeys(value)) if isinstance(value, list) else value


class SectionDraft(_Output):
    """task "write": one section of the report."""

    title: str = Field(min_length=1, max_length=200)
    paragraphs: list[Paragraph] = Field(min_length=1, max_length=30)

    @field_validator("paragraphs", mode="before")
    @classmethod
    def _no_repeated_paragraph(cls, value: Any) -> Any:
        """Drop a paragraph that repeats an earlier one word for word."""
        if not isinstance(value, list):
            return value
        seen: set[str] = set()
        kept = []
        for item in value:
            text = str(item.get("text", "")).strip() if isinstance(item, dict) else ""
            if not text or text not in seen:
                seen.add(text)
                kept.append(item)
        return kept

    @property
    def citations(self) -> list[int]:
        """Every fact id the paragraphs cite, in order of first citation."""
        return list(dict.fromkeys(c for p in self.paragraphs for c in p.citations))

    def to_markdown(self) -> str:
        """The section as markdown, each paragraph followed by its citations as [F<id>]."""
        body = [
            f"{p.text.strip()} {''.join(citation(c) for c in p.citations)}".rstrip()
            for p in self.paragraphs
        ]
        return "\n\n".join([f"## {self.title}", *body]) + "\n"


class Review(_Output):
    """task "review": the verdict on one draft version."""

    approved: bool
    comments: list[str] = Field(default_factory=list, max_length=30)
    unsupported: list[SentenceNumber] = Field(
        default_factory=list,
        max_length=50,
        description="numbers of the draft's sentences that their cited facts do not support",
    )


def _slug(text: str) -> str:
    """A section id from any text: lowercase letters, digits and hyphens, at most 60."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-")
    return slug or "section"
