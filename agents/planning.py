"""A plan that covers the sources: the model's plan, repaired deterministically where it fails.

The plan decides what the report can say: a source no section names gives facts to no one,
and a section no source feeds is left out. A small model plans badly in known ways (all
sources under one section, ids that loop, ``01-redis-streams-streams-streams-…``, a second
section that names no source), so :func:`repair` checks the plan against the sources and
mends it, the same way every time, saying what it did (each repair is one line, stored in
the plan document and shown by ``agentmem inspect``):

- a section whose id or title loops gets them back from its first source's heading;
- a source named by several sections stays with the first;
- a source no section names joins the section whose sources share most subject words with
  it, or gets a section of its own;
- a section no source feeds (nothing could fill it) is dropped;
- when every source sits in one section but the sources have distinct subjects, the section
  is split: sources that share a subject word stay together (as the stub's writer groups
  neighbouring facts), one section per group.

A source's subject words are the content words of its first heading (else its file name),
less the topic's words and any word every source's subject shares ("redis" in a report on
Redis). A plan that needs none of this, such as the stub's, is kept as it is.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

from agentmem.agents.llm_output import Plan, PlannedSection, _slug
from agentmem.agents.sentences import sentences
from agentmem.agents.support import content_words
from agentmem.protocol.events import SourceDoc


def heading(text: str) -> str | None:
    """The text's first markdown heading, if it has one."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or None
    return None


def title_from_name(name: str) -> str:
    """A title from a file name: ``02-locks_and-fencing.md`` -> ``02 locks and fencing``."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or "Notes"


def source_title(source: SourceDoc) -> str:
    return heading(source.text) or title_from_name(source.name)


def subjects(sources: list[SourceDoc], topic: str) -> dict[str, set[str]]:
    """Each source's subject words: its title's content words, less the topic's and those
    every source shares."""
    words = {s.name: set(content_words(source_title(s))) for s in sources}
    shared = set.intersection(*words.values()) if len(words) > 1 else set()
    common = shared | set(content_words(topic))
    return {name: found - common for name, found in words.items()}


def groups(sources: list[SourceDoc], topic: str) -> list[list[SourceDoc]]:
    """The sources grouped by shared subject words (linked through any shared word), in order."""
    words = subjects(sources, topic)
    found: list[tuple[set[str], list[SourceDoc]]] = []
    for source in sources:
        mine = words[source.name]
        joined = [g for g in found if g[0] & mine]
        merged: tuple[set[str], list[SourceDoc]] = (set(mine), [])
        for group in joined:
            merged[0].update(group[0])
            merged[1].extend(group[1])
            found.remove(group)
        merged[1].append(source)
        found.append(merged)
    ordered = [sorted(g, key=sources.index) for _, g in found]
    return sorted(ordered, key=lambda g: sources.index(g[0]))


def repair(plan: Plan, sources: list[SourceDoc], topic: str) -> tuple[Plan, list[str]]:
    """``plan`` mended to cover ``sources`` (see the module's docstring), and what was done."""
    repairs: list[str] = []
    sections = _kept(plan, {s.name: s for s in sources}, repairs)
    sections = _placed(sections, sources, subjects(sources, topic), repairs)
    for empty in [s for s in sections if not s.sources]:
        repairs.append(f"section {empty.section_id!r} names no source: nothing fills it; dropped")
    sections = [s for s in sections if s.sources]
    if len(sections) == 1 and len(sources) > 1:
        split = groups(sources, topic)
        if len(split) > 1:
            repairs.append(
                f"all {len(sources)} sources were planned in one section although they have "
                f"{len(split)} distinct subjects; split into {len(split)} sections"
            )
            sections = [_section_for(g) for g in split]
    return Plan(sections=_unique_ids(sections)), list(dict.fromkeys(repairs))  # each once


def _kept(plan: Plan, by_name: dict[str, SourceDoc], repairs: list[str]) -> list[PlannedSection]:
    """The plan's sections, each with its known sources once (a source with its first
    section), and with an id or title that loops replaced by its first source's heading."""
    sections: list[PlannedSection] = []
    owned: set[str] = set()
    for planned in plan.sections:
        mine: list[str] = []
        for name in planned.sources:
            if name not in by_name:
                continue
            if name in mine:
                repairs.append(f"{name} was listed twice in {planned.section_id!r}; kept once")
            elif name in owned:
                repairs.append(f"{name} was planned in more than one section; kept in the first")
            else:
                owned.add(name)
                mine.append(name)
        section = planned.model_copy(update={"sources": mine})
        if (_loops(section.section_id) or _loops(section.title)) and mine:
            title = source_title(by_name[mine[0]])
            repairs.append(
                f"section id {section.section_id!r} loops; renamed {_slug(title)!r} from {mine[0]}"
            )
            section = section.model_copy(update={"section_id": _slug(title), "title": title})
        sections.append(section)
    return sections


def _placed(
    sections: list[PlannedSection],
    sources: list[SourceDoc],
    words: dict[str, set[str]],
    repairs: list[str],
) -> list[PlannedSection]:
    """``sections`` with every source no section names placed: with the section whose sources
    share most subject words with it, else in a section of its own."""
    sections = list(sections)
    owned = {name for s in sections for name in s.sources}
    for source in sources:
        if source.name in owned:
            continue
        shares = [
            len(words[source.name] & set().union(*(words[n] for n in s.sources))) for s in sections
        ]
        best = max(range(len(shares)), key=lambda i: shares[i], default=-1)
        if best >= 0 and shares[best] > 0:
            target = sections[best]
            sections[best] = target.model_copy(update={"sources": [*target.sources, source.name]})
            repairs.append(
                f"{source.name} was in no section; added to {target.section_id!r} (shared subject)"
            )
        else:
            sections.append(_section_for([source]))
            repairs.append(f"{source.name} was in no section; given a section of its own")
        owned.add(source.name)
    return sections


def _unique_ids(sections: list[PlannedSection]) -> list[PlannedSection]:
    """``sections`` with a suffix on an id already taken (a renamed section may collide)."""
    taken: set[str] = set()
    unique = []
    for section in sections:
        candidate, n = section.section_id, 2
        while candidate in taken:
            candidate, n = f"{section.section_id[:60]}-{n}", n + 1
        taken.add(candidate)
        unique.append(section.model_copy(update={"section_id": candidate}))
    return unique


def _section_for(group: list[SourceDoc]) -> PlannedSection:
    """A section for ``group``, titled and described by its first source, as the stub plans."""
    title = source_title(group[0])
    prose = sentences(group[0].text)
    return PlannedSection(
        section_id=_slug(title),
        title=title[:200],
        description=(prose[0] if prose else title)[:1000],
        sources=[s.name for s in group],
    )


def _loops(text: str) -> bool:
    """Whether a word of ``text`` comes three times, or a pair of words twice."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    pairs = Counter(itertools.pairwise(words))
    return any(n > 2 for n in Counter(words).values()) or any(n > 1 for n in pairs.values())
