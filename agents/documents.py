"""The keys of the run's documents in the shared draft store (PostgreSQL), in one place.

- ``run/plan``: the research agent's plan: topic, sections, and whether it was handed off.
- ``section/<id>``: a section's draft; every write is a new version.
- ``review/<id>/<version>``: the review of one draft version, written once.
"""

from __future__ import annotations

PLAN_KEY = "run/plan"


def draft_key(section_id: str) -> str:
    """The draft document of one section."""
    return f"section/{section_id}"


def review_key(section_id: str, version: int) -> str:
    """The review record of one version of a section's draft."""
    return f"review/{section_id}/{version}"
