"""The agent roles. A module of its own, free of heavy imports, so that the ``agentmem`` command
can offer the roles as choices without importing the agents."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESEARCH = "research"
    WRITER = "writer"
    REVIEW = "review"
