"""The report's framing, composed from its approved sections: introduction, summary, sources.

Everything here reads data (the drafts' paragraphs and the fact ids they cite, the facts'
sources, the review records), never rendered text. A citation names its fact by id, ``[F25]``
(:func:`agents.llm_output.citation`), as the web view, ``agentmem inspect`` and the agents' prompts
do: one name for a fact everywhere, stable while a run goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agentmem.agents.documents import Draft, ReviewRecord
from agentmem.agents.llm_output import citation, citation_label
from agentmem.memory import Document, Fact
from agentmem.orchestrator.tracker import LLMTotals

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


def cited_facts(drafts: Iterable[Draft]) -> list[int]:
    """Every fact id the drafts cite, once each, in reading order (sections, then paragraphs)."""
    return list(dict.fromkeys(c for draft in drafts for c in draft.citations))


def cite(fact_ids: Iterable[int]) -> str:
    """``[F9][F12]`` for the given fact ids."""
    return "".join(citation(i) for i in fact_ids)


def section_markdown(draft: Draft) -> str:
    """The section's heading and paragraphs, each followed by its citations."""
    body = [f"{p.text.strip()} {cite(p.citations)}".rstrip() for p in draft.paragraphs]
    return "\n\n".join([f"## {draft.title}", *body])


_MARKDOWN = re.compile(r"([\\`*_\[\]<>|#])")


def literal(text: str) -> str:
    """``text`` as markdown shows it, character for character: what a submitter wrote (a
    topic, a source's name) can make no link, tag, emphasis, heading or table cell of its own."""
    return _MARKDOWN.sub(r"\\\1", text)


def introduction(topic: str, drafts: list[Draft], facts: list[Fact]) -> str:
    """What the report covers, in which order, and where its statements come from."""
    titles = [d.title for d in drafts]
    topic = topic.strip().rstrip(".")
    if topic[:1].isupper() and topic[1:2].islower():  # "Shared memory" reads on as "shared memory"
        topic = topic[0].lower() + topic[1:]
    topic = literal(topic)
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


def summary(drafts: list[Draft], facts: list[Fact]) -> list[str]:
    """One line per section, repeating no sentence: how many facts it rests on, which,
    and the names it is about (the proper names, commands and years its facts mention most)."""
    by_id = {f.id: f for f in facts}
    lines = []
    for draft in drafts:
        cited = [by_id[c] for c in draft.citations if c in by_id]
        if not cited:
            lines.append(f"- **{draft.title}**: no facts were found in the sources.")
            continue
        about = key_terms([f.fact for f in cited], exclude=draft.title)
        cites = ranges(sorted(f.id for f in cited))
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


def sources_table(facts: list[Fact], cited: Iterable[int]) -> list[str]:
    """A markdown table: each source, how many of its facts are cited, and which."""
    order = {fact_id: n for n, fact_id in enumerate(cited)}
    by_source: dict[str, list[int]] = {}
    for fact in sorted(facts, key=lambda f: order.get(f.id, -1)):
        if fact.id in order:
            source = fact.metadata.get("source", "unknown source")
            by_source.setdefault(source, []).append(fact.id)
    rows = ["| Source | Facts cited | Citations |", "|---|---:|---|"]
    for source, ids in by_source.items():  # in order of first citation
        rows.append(f"| {literal(source)} | {len(ids)} | {ranges(sorted(ids))} |")
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
    """``F1-F3, F5`` for fact ids ``[1, 2, 3, 5]``."""
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    return ", ".join(
        citation_label(a) if a == b else f"{citation_label(a)}-{citation_label(b)}"
        for a, b in spans
    )


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
