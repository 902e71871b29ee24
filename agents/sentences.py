"""A source's sentences, numbered: what the "extract" task chooses facts from.

A model asked to copy a quote paraphrases it (a small one always does); a model asked for
the number of a sentence cannot. So the research agent shows each source as numbered
sentences and maps the numbers it gets back to the sentences, each verbatim in the source.
"""

from __future__ import annotations

import re

# A sentence ends at . ! or ? before a capital, except after an initial ("H. T. Kung").
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)\s+(?=[A-Z0-9\"'(])")
_LIST_MARKER = re.compile(r"^([-*+]|\d+\.)\s+")


def sentences(text: str) -> list[str]:
    """The prose sentences of ``text`` (headings, tables, code dropped), each verbatim in it."""
    found: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "```", "|", ">")):
            continue
        stripped = _LIST_MARKER.sub("", stripped)
        found += [s.strip() for s in _SENTENCE_END.split(stripped) if s.strip()]
    return [s for s in dict.fromkeys(found) if s in text]


def split(text: str) -> list[str]:
    """Every sentence of a paragraph ``text``, in order, repeats kept (the support check
    needs to see a repeated sentence)."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def numbered(items: list[str]) -> str:
    """``items`` one a line, numbered from 1 as ``[n] sentence``."""
    return "\n".join(f"[{n}] {s}" for n, s in enumerate(items, start=1))
