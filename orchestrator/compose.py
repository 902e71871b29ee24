"""The report's framing, composed from its approved sections: introduction, summary, sources.

Everything here reads data (the drafts' paragraphs and the fact ids they cite, the facts'
sources, the review records), never rendered text. Citations are numbered 1..n in the order a
reader meets them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agents.documents import Draft, ReviewRecord
from memory import Document, Fact
from orchestrator.tracker import LLMTotals

_NAME_RUN = re.compile(r"(?:[A-Z][A-Za-z0-9-]+|[A-Z]\.)(?:\s+(?:[A-Z][A-Za-z0-9-]+|[A-Z]\.))*")
_MONTHS = frozenset(
    {
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SectionHistory:
    """One section's settled draft, every version before it, and each version's review."""

    section_id: str
    final: Document
    versions: list[Document]
    reviews: dict[int, ReviewRecord]

    @property
    def draft(self) -> Draft:
        return Draft.model_validate(self.final.value)


def citation_numbers(drafts: Iterable[Draft]) -> dict[int, int]:
    """Fact id -> citation number, numbered 1..n in reading order (sections, then paragraphs)."""
    numbers: dict[int, int] = {}
    for draft in drafts:
        for paragraph in draft.paragraphs:
            for fact_id in paragraph.citations:
                numbers.setdefault(fact_id, len(numbers) + 1)
    return numbers


def cite(fact_ids: Iterable[int], numbers: dict[int, int]) -> str:
    """``[1][2]`` for the given fact ids (those without a number are left out)."""
    return "".join(f"[{numbers[i]}]" for i in fact_ids if i in numbers)


def section_markdown(draft: Draft, numbers: dict[int, int]) -> str:
    """The section's heading and paragraphs, each followed by its citation numbers."""
    body = [f"{p.text.strip()} {cite(p.citations, numbers)}".rstrip() for p in draft.paragraphs]
    return "\n\n".join([f"## {draft.title}", *body])


def introduction(topic: str, drafts: list[Draft], facts: list[Fact]) -> str:
    """What the report covers, in which order, and where its statements come from."""
    titles = [d.title for d in drafts]
    topic = topic.strip().rstrip(".")
    if topic[:1].isupper() and topic[1:2].islower():  # "Shared memory" reads on as "shared memory"
        topic = topic[0].lower() + topic[1:]
    sources = sorted({f.metadata.get("source", "unknown") for f in facts})
    listed = _join(titles)
    if not drafts:
        return (
            f"This report was to cover {topic}, but no section could be written: the research "
            "agent found no facts in the sources for any planned section."
        )
    return (
        f"This report covers {topic}. It has {len(drafts)} "
        f"section{'s' if len(drafts) != 1 else ''}: {listed}. Each number in brackets cites "
        f"a fact, a sentence quoted verbatim from one of {len(sources)} source document"
        f"{'s' if len(sources) != 1 else ''}; the sources table at the end lists them."
    )


def summary(drafts: list[Draft], facts: list[Fact], numbers: dict[int, int]) -> list[str]:
    """One line per section, repeating no sentence: how many facts it rests on, their numbers,
    and the names it is about (the proper names, commands and years its facts mention most)."""
    by_id = {f.id: f for f in facts}
    lines = []
    for draft in drafts:
        cited = [by_id[c] for c in draft.citations if c in by_id]
        if not cited:
            lines.append(f"- **{draft.title}**: no facts were found in the sources.")
            continue
        about = key_terms([f.fact for f in cited], exclude=draft.title)
        cites = ranges(sorted(numbers[f.id] for f in cited))
        topics = f", about {_join(about)}" if about else ""
        lines.append(
            f"- **{draft.title}** rests on {len(cited)} fact{'s' * (len(cited) > 1)} "
            f"[{cites}]{topics}."
        )
    return lines


def key_terms(sentences: list[str], *, exclude: str = "", limit: int = 4) -> list[str]:
    """The names the sentences mention most: runs of capitalised words ("H. T. Kung", "Apache
    Kafka", "XAUTOCLAIM"), not a sentence's opening word, not a month, not in ``exclude``;
    ties keep the order of first mention."""
    skip = {w.lower() for w in exclude.split()}
    counts: dict[str, int] = {}
    for sentence in sentences:
        for match in _NAME_RUN.finditer(sentence):
            words = match.group(0).split()
            if match.start() == 0:
                words = words[1:]
            while words and (words[0].lower() in skip or words[0] in _MONTHS):
                words = words[1:]
            name = " ".join(words)
            if len(name) > 2 and name.lower() not in skip:
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda w: -counts[w])[:limit]


def sources_table(facts: list[Fact], numbers: dict[int, int]) -> list[str]:
    """A markdown table: each source, how many of its facts are cited, and their numbers."""
    by_source: dict[str, list[int]] = {}
    for fact in facts:
        if fact.id in numbers:
            source = fact.metadata.get("source", "unknown source")
            by_source.setdefault(source, []).append(numbers[fact.id])
    rows = ["| Source | Facts cited | Citations |", "|---|---:|---|"]
    for source, cited in sorted(by_source.items(), key=lambda item: min(item[1])):
        rows.append(f"| {source} | {len(cited)} | {ranges(sorted(cited))} |")
    return rows


def provenance(history: SectionHistory) -> str:
    """Who wrote the section, in how many versions, what review asked for and how it ended."""
    writers = _join(sorted({d.agent_id for d in history.versions}))
    versions = len(history.versions)
    asked = []
    for version in sorted(history.reviews):
        review = history.reviews[version]
        if not review.approved and review.comments:
            asked.append(f"review of version {version} asked: {_gist(review.comments)}")
    final = history.reviews.get(history.final.version)
    verdict = (
        "approved"
        if final is not None and final.approved
        else "accepted at the round limit"
        if final is not None
        else "settled"
    )
    parts = [
        f"Written by {writers} in {versions} version{'s' if versions != 1 else ''}",
        *asked,
        f"version {history.final.version} {verdict}",
    ]
    return "*" + "; ".join(parts) + ".*"


def ranges(numbers: list[int]) -> str:
    """``1-3, 5`` for ``[1, 2, 3, 5]``."""
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def without_facts(titles: list[str]) -> list[str]:
    """The paragraph naming planned sections that no source gave a fact for (none if all had)."""
    if not titles:
        return []
    named = _join([f"“{t}”" for t in titles])
    these = "this section was" if len(titles) == 1 else "these sections were"
    return [f"*No facts were found for {named} in the sources, so {these} left out.*", ""]


def llm_use(totals: LLMTotals, models: list[str]) -> str:
    """The footer's sentence on the run's LLM calls and the tokens they used."""
    calls, retries, failed = totals.calls, totals.retries, totals.failed
    if not calls:
        return "No LLM calls were recorded for this run."
    prompt, completion = totals.prompt_tokens, totals.completion_tokens
    on = f" on {_join([f'`{m}`' for m in models])}" if models else ""
    return (
        f"The agents made {calls} LLM call{'s' * (calls != 1)}{on} ({retries} "
        f"retr{'ies' if retries != 1 else 'y'}, {failed} without an answer), using "
        f"{prompt:,} prompt and {completion:,} completion tokens ({prompt + completion:,} in all)."
    )


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def _gist(comments: list[str]) -> str:
    """The first comment's opening clause (before any list it gives), and how many more."""
    head = " ".join(comments[0].split())
    clause, _, rest = head.partition(": ")
    gist = clause if rest and len(clause) >= 20 else _clip(head)
    more = len(comments) - 1
    return f"{gist.rstrip('.')}" + (f" (and {more} more comment{'s' * (more > 1)})" if more else "")


def _clip(text: str, limit: int = 140) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
