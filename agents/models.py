"""What the LLM produces for each task, as pydantic models (the output contracts).

The agents never parse free text: each LLM call names one of these models, and its output
is validated against it (and retried, within bounds, when it does not fit).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

_SECTION_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"

FactId = Annotated[int, Field(ge=1)]


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlannedSection(_Output):
    """One section of the report, and the sources that feed it."""

    section_id: str = Field(pattern=_SECTION_ID, description="lowercase slug, e.g. 'locks'")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    sources: list[str] = Field(default_factory=list, description="names of the sources used")


class Plan(_Output):
    """task "plan": the report's sections."""

    sections: list[PlannedSection] = Field(min_length=1, max_length=20)


class ExtractedFact(_Output):
    """A fact, and the verbatim passage of the source that states it."""

    section_id: str = Field(pattern=_SECTION_ID)
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
