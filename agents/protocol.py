"""The run's event protocol: every event type on a run's stream and the payload it carries.

One stream per run (the run id is the memory namespace) holds the whole log: requests,
handoffs between roles, and results. Each role reads it through its own consumer group
(``GROUP_BY_ROLE``); several processes of one role share the work of that group.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.untrusted import quote

RUN_STREAM = "run"


class Role(StrEnum):
    RESEARCH = "research"
    WRITER = "writer"
    REVIEW = "review"


class EventType(StrEnum):
    RUN_REQUESTED = "run.requested"  # orchestrator -> research
    RUN_PLANNED = "run.planned"  # research -> everyone: the sections to expect
    SECTION_ASSIGNED = "section.assigned"  # research -> writer: facts are stored, write it
    SECTION_DRAFTED = "section.drafted"  # writer -> review: a version is in the draft store
    SECTION_REVISION_REQUESTED = "section.revision_requested"  # review -> writer
    SECTION_APPROVED = "section.approved"  # review -> orchestrator
    SECTION_ROUND_LIMIT = "section.round_limit"  # review -> orchestrator: accepted as is
    AGENT_FAILED = "agent.failed"  # any agent: a step failed for good (shown to the user)
    RUN_COMPLETED = "run.completed"  # orchestrator: the report is written


# Which event types each role's consumer group acts on; the rest it acknowledges and skips.
HANDLED_BY: dict[Role, frozenset[EventType]] = {
    Role.RESEARCH: frozenset({EventType.RUN_REQUESTED}),
    Role.WRITER: frozenset({EventType.SECTION_ASSIGNED, EventType.SECTION_REVISION_REQUESTED}),
    Role.REVIEW: frozenset({EventType.SECTION_DRAFTED}),
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceDoc(_Payload):
    name: str = Field(min_length=1, max_length=256)
    text: str = Field(min_length=1)


class RunRequested(_Payload):
    topic: str = Field(min_length=1, max_length=500)
    sources: list[SourceDoc] = Field(min_length=1)


class SectionPlan(_Payload):
    section_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    description: str = ""

    @property
    def category(self) -> str:
        """The shared-fact category holding this section's facts."""
        return self.section_id

    def quoted(self, written_by: str) -> dict[str, Any]:
        """The section as LLM input: its title and description are text ``written_by`` wrote."""
        return {
            "section_id": self.section_id,
            "title": quote(self.title, written_by=written_by),
            "description": quote(self.description, written_by=written_by),
        }


class RunPlanned(_Payload):
    topic: str
    sections: list[SectionPlan]
    fact_count: int = Field(ge=0)


class SectionAssigned(_Payload):
    section: SectionPlan


class SectionDrafted(_Payload):
    section_id: str
    version: int = Field(ge=1)
    round: int = Field(ge=0)


class SectionRevisionRequested(_Payload):
    section_id: str
    version: int = Field(ge=1)
    round: int = Field(ge=0)
    comments: list[str]


class SectionApproved(_Payload):
    section_id: str
    version: int = Field(ge=1)
    round: int = Field(ge=0)
    comments: list[str] = []


class AgentFailed(_Payload):
    role: Role
    step: str
    error: str


class RunCompleted(_Payload):
    report_path: str
