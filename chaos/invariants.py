"""The invariants a finished run must keep, however much broke while it ran.

Used by ``python -m agentmem.chaos`` (``make chaos``) after each run, and by the fault-injection
tests: every planned section appears in the report exactly once and is settled; every fact
its settled draft cites (read from the draft's data) exists and quotes its source; the run
holds exactly the facts a clean run holds, none twice; every handoff was published once; every
draft version is accounted for (versions 1..n, one per review round).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentmem.agents.documents import Draft, draft_key
from agentmem.memory import RedisAgentMemory, SharedAgentDB
from agentmem.protocol import SectionState
from agentmem.protocol.events import SourceDoc


async def run_problems(
    memory: RedisAgentMemory,
    db: SharedAgentDB,
    *,
    report: str,
    record: dict[str, Any],
    sources: list[SourceDoc],
    expected_facts: int,
) -> list[str]:
    """Every broken invariant of the run, as a sentence; an empty list means a whole run."""
    problems: list[str] = []
    sections = record["sections"]
    for section in sections:
        count = report.count(f"## {section['title']}\n")
        if count != 1:
            problems.append(f"section {section['section_id']} appears {count} times")
        if not SectionState(section["state"]).settled:
            problems.append(f"section {section['section_id']} ended {section['state']}")

    texts = {s.name: s.text for s in sources}
    cited = sorted(
        {
            fact_id
            for section in sections
            for version in record["drafts"][section["section_id"]]
            if version["version"] == section["version"]
            for fact_id in Draft.model_validate(version["value"]).citations
        }
    )
    facts = await memory.get_facts(cited)
    if [f.id for f in facts] != cited:
        problems.append(f"cited facts missing from Redis: {set(cited) - {f.id for f in facts}}")
    for fact in facts:
        if fact.metadata.get("quote", "") not in texts.get(fact.metadata.get("source", ""), ""):
            problems.append(f"fact {fact.id} does not quote its source")
    stored = await memory.count_facts()
    if stored != expected_facts:
        problems.append(f"{stored} facts stored, a clean run stores {expected_facts}")
    repeated = [t for t, n in Counter(f["fact"] for f in record["facts"]).items() if n > 1]
    if repeated:
        problems.append(f"{len(repeated)} facts stored twice")

    types = Counter(e["event_type"] for e in record["events"])
    if types["run.planned"] != 1:
        problems.append(f"run.planned published {types['run.planned']} times")
    if types["section.assigned"] != len(sections):
        problems.append(f"{types['section.assigned']} section handoffs for {len(sections)}")

    for section in sections:
        history = await db.history(draft_key(section["section_id"]))
        versions = [d.version for d in history]
        rounds = [Draft.model_validate(d.value).round for d in history]
        if versions != list(range(1, len(history) + 1)) or rounds != list(range(len(history))):
            problems.append(
                f"section {section['section_id']} versions {versions} rounds {rounds}: "
                "a draft version was lost or written twice"
            )
    return problems
