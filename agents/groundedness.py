"""Groundedness as a figure: supported / counted sentences, per section and for the report.

Computed from data, the settled drafts and the facts they cite, by the same deterministic
check review applies (:func:`agents.support.check`), so the run record, the report's footer,
``agentmem inspect`` and the web page give the same figure for the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentmem.agents.documents import Draft
from agentmem.agents.support import check
from agentmem.memory import Fact


@dataclass(frozen=True, slots=True)
class SectionFigure:
    """One settled section: how many of its sentences its cited facts support."""

    section_id: str
    supported: int
    total: int
    extractive: str | None  # why it was written from its facts (None: the model wrote it)

    def as_dict(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "total": self.total,
            "ratio": ratio(self.supported, self.total),
            "extractive": self.extractive,
        }


def section_figures(drafts: Mapping[str, Draft], facts: Iterable[Fact]) -> list[SectionFigure]:
    """Each draft checked against the facts of its own section (by category)."""
    by_section: dict[str, list[Fact]] = {}
    for fact in facts:
        by_section.setdefault(fact.category, []).append(fact)
    figures = []
    for section_id, draft in drafts.items():
        support = check(draft, by_section.get(section_id, []))
        figures.append(
            SectionFigure(section_id, support.supported, support.total, draft.extractive)
        )
    return figures


def ratio(supported: int, total: int) -> float:
    return round(supported / total, 3) if total else 0.0


def record(figures: list[SectionFigure]) -> dict[str, Any]:
    """The figures as the run record keeps them."""
    supported = sum(f.supported for f in figures)
    total = sum(f.total for f in figures)
    return {
        "supported": supported,
        "total": total,
        "ratio": ratio(supported, total),
        "sections": {f.section_id: f.as_dict() for f in figures},
    }


def phrase(supported: int, total: int) -> str:
    """``41 of 42 sentences (98%)``."""
    percent = f" ({100 * supported / total:.0f}%)" if total else ""
    return f"{supported} of {total} sentence{'s' * (total != 1)}{percent}"
