"""The run's documents in the shared draft store (PostgreSQL): their keys and their values.

- ``run/plan`` (:class:`PlanDoc`): the research agent's plan: topic, sections, which section
  each source feeds, and whether the sections were handed off.
- ``run/extracted/<n>`` (:class:`SourceExtracted`): the facts stored from the plan's n-th
  source (in the order of their names: :meth:`PlanDoc.records`), their keys per section,
  written once; the researcher whose record completes the set hands the sections to the
  writers (:class:`ExtractedDoc` gathers the set).
- ``section/<id>`` (:class:`Draft`): a section's draft; every write is a new version. Its
  paragraphs carry the ids of the facts they cite, as data: the report and the run checks
  read the citations from here, never from rendered text.
- ``review/<id>/<version>`` (:class:`ReviewRecord`): the review of one draft version, written
  once, with the support check's verdict on each of its sentences.

Readers validate a document's value with its model; writers store ``model_dump(mode="json")``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentmem.agents.llm_output import SectionDraft
from agentmem.agents.support import Support
from agentmem.protocol.events import EventType, RunPlanned, SectionId, SectionPlan

PLAN_KEY = "run/plan"


def extracted_key(index: int) -> str:
    """The record of the plan's ``index``-th source (see :meth:`PlanDoc.records`)."""
    return f"run/extracted/{index}"


def draft_key(section_id: str) -> str:
    """The draft document of one section."""
    return f"section/{section_id}"


def review_key(section_id: str, version: int) -> str:
    """The review record of one version of a section's draft."""
    return f"review/{section_id}/{version}"


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanDoc(_Document):
    """``run/plan``: the sections planned for the run's topic."""

    topic: str
    sections: list[SectionPlan]
    source_sections: dict[str, SectionId] = Field(
        description="source name -> the section its facts are extracted for"
    )
    published: bool = False
    planned: RunPlanned | None = None
    repairs: list[str] = Field(
        default_factory=list, description="what was repaired in the model's plan, and why"
    )

    def records(self) -> dict[str, str]:
        """Each source's extraction record key, by source name, numbered in the order of the
        names: never in the order of ``source_sections``, which a jsonb round trip does not keep
        (PostgreSQL stores an object's keys shortest first, then bytewise), so the plan as its
        writer holds it and as every other researcher reads it back number them alike."""
        return {name: extracted_key(i) for i, name in enumerate(sorted(self.source_sections))}


class SourceExtracted(_Document):
    """``run/extracted/<n>``: one source's stored facts, written once by whoever extracted it.

    One document per source, so researchers extracting at once never contend for a record."""

    source: str
    sections: dict[SectionId, list[str]] = Field(
        default_factory=dict, description="section id -> the keys of the facts stored for it"
    )


class ExtractedDoc(_Document):
    """The sources whose facts are stored, each with its facts' keys (read from the records)."""

    sources: dict[str, dict[SectionId, list[str]]] = Field(
        default_factory=dict, description="source name -> section id -> the facts' keys"
    )

    def fact_keys(self) -> dict[str, set[str]]:
        """The keys of the stored facts of each section, over every extracted source."""
        keys: dict[str, set[str]] = {}
        for sections in self.sources.values():
            for section_id, fact_keys in sections.items():
                keys.setdefault(section_id, set()).update(fact_keys)
        return keys


class Draft(SectionDraft):
    """``section/<id>``: one version of a section, written in review round ``round``."""

    section: SectionPlan
    round: int = Field(ge=0)
    facts: int = Field(default=0, ge=0)  # how many facts research stored for the section
    # Why the section was written from its facts rather than by the model (None: it was not).
    extractive: str | None = None

    @property
    def section_id(self) -> str:
        return self.section.section_id


class ReviewRecord(_Document):
    """``review/<id>/<version>``: the verdict on one draft version and the decision it led to."""

    section_id: SectionId
    version: int = Field(ge=1)
    round: int = Field(ge=0)
    approved: bool
    comments: list[str]
    decision: EventType
    support: Support | None = None  # each sentence's verdict (None: reviewed before the check)
