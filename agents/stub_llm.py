"""A deterministic stand-in for the LLM that works from its input, for the demo and tests.

It answers the same four tasks as a real model, from what it is given and nothing else:

- ``plan``: one section per source, titled by the source's first heading.
- ``extract``: the source's informative sentences, chosen by number (sentences with
  figures, names or dates first), at most :data:`MAX_FACTS` per source.
- ``write``: paragraphs built from the section's facts in source order, each citing the
  facts it states; neighbouring sentences that share a subject word share a paragraph. A
  first draft covers only the first :data:`FIRST_DRAFT_SHARE` of the facts, as a hurried first
  draft would; a revision (a previous draft or review comments given) covers all of them.
- ``review``: checks it can compute: every paragraph cites a fact, every citation is a fact of
  the section, at least :data:`MIN_COVERAGE` of the section's facts are cited, the length is
  within bounds. The comments say exactly what is missing.

So a section with three or more facts gets exactly one revision round and is then approved
(with one or two, the first draft already cites them all), and the report says only what its
sources say. Same input, same answer: nothing is random and nothing is canned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import anyio

from agentmem.agents.llm_base import LLMError, T, Usage
from agentmem.agents.llm_output import (
    Extraction,
    Paragraph,
    Plan,
    PlannedSection,
    Review,
    SectionDraft,
)
from agentmem.agents.planning import heading, title_from_name
from agentmem.agents.schemas import Bounds
from agentmem.agents.sentences import sentences
from agentmem.agents.untrusted import unquoted

MAX_FACTS = 8
FIRST_DRAFT_SHARE = 0.6
MIN_COVERAGE = 0.8
MIN_CHARS, MAX_CHARS = 40, 6000
MAX_PER_PARAGRAPH = 3

_NEEDS_CONTEXT = re.compile(r"^(It|Its|This|These|That|They|Their|He|She|His|Her)\b")
_GLUE = frozenset(
    [
        "that",
        "this",
        "these",
        "those",
        "with",
        "from",
        "into",
        "when",
        "which",
        "while",
        "where",
        "there",
        "their",
        "they",
        "them",
        "than",
        "then",
        "have",
        "has",
        "been",
        "were",
        "will",
        "would",
        "could",
        "should",
        "does",
        "also",
        "only",
        "more",
        "most",
        "such",
        "each",
        "every",
        "other",
        "another",
        "because",
        "after",
        "before",
        "over",
        "under",
        "about",
        "same",
        "first",
    ]
)
_INFORMATIVE = re.compile(r"\d|\b[A-Z][a-zA-Z]+\b.*\b[A-Z][a-zA-Z]+\b")


class StubLLM:
    """An :class:`agents.llm_base.LLM` that needs no network and always gives the same answer.

    ``delay_seconds`` makes each call take that long, like a real model (for demos and
    fault-injection tests that need work to be in flight).
    """

    model = "stub"

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.delay_seconds = delay_seconds

    async def generate(
        self,
        *,
        task: str,
        instructions: str,
        payload: Mapping[str, Any],
        output: type[T],
        usage: Usage | None = None,
        bounds: Bounds | None = None,
    ) -> T:
        del (
            instructions,
            usage,
            bounds,
        )  # the behaviour is fixed (the prompt is for real models), no tokens
        # The stub reads the content of quoted text; it follows no instruction in it.
        if self.delay_seconds:
            await anyio.sleep(self.delay_seconds)
        tasks = {"plan": plan, "extract": extract, "write": write, "review": review}
        if task not in tasks:
            msg = f"the stub LLM does not know the task {task!r}"
            raise LLMError(msg)
        answer = tasks[task](unquoted(payload))
        return output.model_validate(answer.model_dump())


def plan(payload: Mapping[str, Any]) -> Plan:
    """One section per source, in the order given."""
    sections: list[PlannedSection] = []
    taken: set[str] = set()
    for source in payload["sources"]:
        text = source.get("excerpt") or source.get("text") or ""
        title = heading(text) or title_from_name(source["name"])
        section_id = _unique(_slug(title), taken)
        prose = sentences(text)
        description = prose[0] if prose else title
        sections.append(
            PlannedSection(
                section_id=section_id,
                title=title,
                description=description[:1000],
                sources=[source["name"]],
            )
        )
    return Plan(sections=sections)


def extract(payload: Mapping[str, Any]) -> Extraction:
    """The source's most informative sentences, by number, in source order."""
    # The sentences arrive one a line, as "[n] sentence", numbered from 1.
    lines = payload["source"]["sentences"].splitlines()
    numbered = {n: line.partition("] ")[2] for n, line in enumerate(lines, start=1)}
    usable = [n for n, s in numbered.items() if 40 <= len(s) <= 600]
    chosen = sorted(sorted(usable, key=lambda n: (_rank(numbered[n]), n))[:MAX_FACTS])
    return Extraction(sentences=chosen)


def write(payload: Mapping[str, Any]) -> SectionDraft:
    """Paragraphs stating the facts in source order, each citing them; a first draft covers
    only some. Neighbouring sentences share a paragraph when they share a subject."""
    facts = sorted(payload["facts"], key=lambda f: int(f["id"]))  # ids follow source order
    if payload.get("previous") is None and not payload.get("comments"):
        facts = facts[: max(1, math.ceil(len(facts) * FIRST_DRAFT_SHARE))]
    groups: list[list[Mapping[str, Any]]] = []
    for fact in facts:
        last = groups[-1] if groups else []
        words = set().union(*(_content_words(f["fact"]) for f in last)) if last else set()
        if last and len(last) < MAX_PER_PARAGRAPH and words & _content_words(fact["fact"]):
            last.append(fact)
        else:
            groups.append([fact])
    paragraphs = [
        Paragraph(
            text=" ".join(_as_sentence(f["fact"]) for f in group),
            citations=[int(f["id"]) for f in group],
        )
        for group in groups
    ]
    if not paragraphs:
        note = f"No facts about {payload['section']['title']} were found in the sources."
        paragraphs.append(Paragraph(text=note, citations=[]))
    return SectionDraft(title=payload["section"]["title"], paragraphs=paragraphs)


def review(payload: Mapping[str, Any]) -> Review:
    """Approve only a draft whose citations, coverage and length all check out."""
    facts = {int(f["id"]): f["fact"] for f in payload["facts"]}
    paragraphs = payload["draft"]["paragraphs"]
    cited = {int(c) for p in paragraphs for c in p["citations"]}
    comments = []
    uncited = [i + 1 for i, p in enumerate(paragraphs) if not p["citations"]]
    if uncited:
        comments.append(f"Paragraphs {uncited} cite no fact; every claim needs a citation.")
    unknown = sorted(cited - facts.keys())
    if unknown:
        comments.append(f"Citations {unknown} are not facts of this section.")
    missing = [i for i in sorted(facts) if i not in cited]
    needed = math.ceil(MIN_COVERAGE * len(facts))
    if len(cited & facts.keys()) < needed:
        named = "; ".join(f"[F{i}] {_clip(facts[i]).rstrip('.')}" for i in missing)
        comments.append(
            f"Not yet covered ({len(cited & facts.keys())} of {len(facts)} facts cited, "
            f"at least {needed} needed): {named}"
        )
    length = sum(len(p["text"]) for p in paragraphs)
    if not MIN_CHARS <= length <= MAX_CHARS:
        comments.append(f"Length {length} characters is outside {MIN_CHARS}-{MAX_CHARS}.")
    return Review(approved=not comments, comments=comments)


def _content_words(sentence: str) -> set[str]:
    """The sentence's words that carry its subject (long, not grammatical glue), lowercased."""
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9-]{3,}", sentence)}
    return words - _GLUE


def _rank(sentence: str) -> int:
    """0 for a self-contained sentence with figures or names, 1 for other ones, 2 for the rest."""
    if _NEEDS_CONTEXT.match(sentence):
        return 2
    return 0 if _INFORMATIVE.search(sentence) else 1


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].rstrip("-")
    return slug or "section"


def _unique(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
