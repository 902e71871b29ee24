"""What the LLM produces for each task, as pydantic models (the output contracts).

The agents never parse free text: each LLM call names one of these models, and its output
is validated against it (and retried, within bounds, when it does not fit).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agents.protocol import SectionId, SectionPlan

FactId = Annotated[int, Field(ge=1)]


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


class ExtractedFact(_Output):
    """A fact, and the verbatim passage of the source that states it."""

    section_id: SectionId
    fact: str = Field(min_length=1, max_length=1000)
    quote: str = Field(min_length=1, max_length=2000, description="verbatim from the source")


class Extraction(_Output):
    """task "extract": the facts one source supports."""

    facts: list[ExtractedFact] = Field(default_factory=list, max_length=50)


class Paragraph(_Output):
    """A paragraph of a section and the ids of the facts it rests on."""

    text: str = Field(min_length=1, max_length=4000)
    citations: list[FactId] = Field(
        default_factory=list, max_length=50, description="fact ids, e.g. [3, 7]"
    )


class SectionDraft(_Output):
    """task "write": one section of the report."""

    title: str = Field(min_length=1, max_length=200)
    paragraphs: list[Paragraph] = Field(min_length=1, max_length=30)

    @property
    def citations(self) -> list[int]:
        """Every fact id the paragraphs cite, in order of first citation."""
        return list(dict.fromkeys(c for p in self.paragraphs for c in p.citations))

    def to_markdown(self) -> str:
        """The section as markdown, each paragraph followed by its citations as [F<id>]."""
        body = [
            f"{p.text.strip()} {''.join(f'[F{c}]' for c in p.citations)}".rstrip()
            for p in self.paragraphs
        ]
        return "\n\n".join([f"## {self.title}", *body]) + "\n"


class Review(_Output):
    """task "review": the verdict on one draft version."""

    approved: bool
    comments: list[str] = Field(default_factory=list, max_length=30)
