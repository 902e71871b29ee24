"""The run's outputs: the report in markdown and a machine-readable record of the run."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import anyio

from agents.documents import Draft, ReviewRecord, draft_key, review_key
from memory import AgentEvent, Document, EventStore, Fact, RedisAgentMemory, SharedAgentDB
from orchestrator.compose import (
    SectionHistory,
    citation_numbers,
    introduction,
    llm_use,
    provenance,
    section_markdown,
    sources_table,
    summary,
    without_facts,
)
from orchestrator.supervisor import Restart
from orchestrator.tracker import RunState


async def final_drafts(db: SharedAgentDB, state: RunState) -> dict[str, Document]:
    """The settled version of every planned section's draft, in plan order.

    Read through the replica when there is one: a settled version it has not replayed yet is
    read from the primary (see :meth:`SharedAgentDB.replica`).
    """
    db = db.replica()
    latest = await db.read_many([draft_key(s) for s in state.sections])
    drafts = {}
    for section_id, section in state.sections.items():
        doc = latest.get(draft_key(section_id))
        if section.version and (doc is None or doc.version != section.version):
            doc = await db.read(draft_key(section_id), version=section.version)
        if doc is None:
            msg = f"section {section_id!r} has no draft version {section.version}"
            raise LookupError(msg)
        drafts[section_id] = doc
    return drafts


async def section_histories(
    db: SharedAgentDB, state: RunState, drafts: dict[str, Document]
) -> dict[str, SectionHistory]:
    """Every section's versions up to the settled one, and the review of each version."""
    versions: dict[str, list[Document]] = {}

    async def fetch(section_id: str) -> None:
        versions[section_id] = await db.history(draft_key(section_id))

    async with anyio.create_task_group() as tg:
        for section_id in drafts:
            tg.start_soon(fetch, section_id)
    keys = [review_key(s, d.version) for s, docs in versions.items() for d in docs]
    records = await db.read_many(keys)
    histories = {}
    for section_id, final in drafts.items():
        reviews = {}
        for doc in versions[section_id]:
            record = records.get(review_key(section_id, doc.version))
            if record is not None:
                reviews[doc.version] = ReviewRecord.model_validate(record.value)
        kept = [d for d in versions[section_id] if d.version <= final.version]
        histories[section_id] = SectionHistory(section_id, final, kept, reviews)
    return histories


def cited_ids(drafts: dict[str, Document]) -> list[int]:
    """Every fact id cited by the drafts, in order of first citation (read from their data)."""
    ids: dict[int, None] = {}
    for doc in drafts.values():
        ids.update(dict.fromkeys(Draft.model_validate(doc.value).citations))
    return list(ids)


def render_markdown(
    run_id: str, state: RunState, histories: dict[str, SectionHistory], facts: list[Fact]
) -> str:
    """The report: title, introduction, every section once, a summary, then its sources."""
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    drafts = [h.draft for h in histories.values()]
    numbers = citation_numbers(drafts)
    lines = [
        f"# {state.topic}",
        "",
        f"*Run `{run_id}`, {created}. {len(drafts)} section{'s' * (len(drafts) != 1)} "
        "written by the writing agents "
        f"from {state.fact_count} facts the research agent extracted from the sources, each "
        "reviewed by the review agent.*",
        "",
        "## Introduction",
        "",
        introduction(state.topic, drafts, facts),
        "",
    ]
    for history in histories.values():
        lines += [section_markdown(history.draft, numbers), "", provenance(history), ""]
    lines += without_facts([s.title for s in state.without_facts])
    models = sorted({c.model for c in state.llm_calls})
    lines += [
        "## Summary",
        "",
        *summary(drafts, facts, numbers),
        "",
        "## Sources",
        "",
        *sources_table(facts, numbers),
        "",
        "---",
        f"Each citation number is a fact shared in Redis (namespace `{run_id}`) that quotes "
        "its source verbatim; `agentmem inspect --facts` lists them. Every draft version is "
        f"kept in PostgreSQL; the full event log is in the run's record (`{run_id}.json`) and "
        f"its timeline in `{run_id}.html`.",
        "",
        llm_use(state.llm_totals, models),
        "",
    ]
    return "\n".join(lines)


async def read_log(events: EventStore) -> list[AgentEvent]:
    """Every event of the run's stream, oldest first."""
    log: list[AgentEvent] = []
    since = "0-0"
    while page := await events.read_events(since=since, count=1000):
        log += page
        since = page[-1].event_id or since
    return log


async def run_record(
    state: RunState,
    memory: RedisAgentMemory,
    log: list[AgentEvent],
    db: SharedAgentDB,
    *,
    run_id: str,
    timings: dict[str, float],
    restarts: list[Restart],
) -> dict[str, Any]:
    """Everything about the run: events, restarts, every draft version, every fact, timings."""
    by_section: dict[str, list[Fact]] = {}
    drafts: dict[str, list[Document]] = {}

    async def fetch(section_id: str) -> None:
        by_section[section_id] = await memory.get_facts_by_category(section_id)
        drafts[section_id] = await db.history(draft_key(section_id))

    async with anyio.create_task_group() as tg:
        for section_id in state.sections:
            tg.start_soon(fetch, section_id)
    facts = [f for s in state.sections for f in by_section[s]]
    return {
        "run_id": run_id,
        "topic": state.topic,
        "timings_seconds": timings,
        "sections": [
            {
                "section_id": s.plan.section_id,
                "title": s.plan.title,
                "state": s.state,
                "version": s.version,
                "revisions": s.revisions,
            }
            for s in state.sections.values()
        ],
        "events": [e.model_dump(mode="json") for e in log],
        "without_facts": [s.section_id for s in state.without_facts],
        "llm": dataclasses.asdict(state.llm_totals),
        "restarts": [
            {"at": r.at.isoformat(), "agent": r.agent, "exit_code": r.exit_code} for r in restarts
        ],
        "drafts": {
            section: [
                {
                    "version": d.version,
                    "agent_id": d.agent_id,
                    "created_at": d.created_at.isoformat(),
                    "fencing_token": d.fencing_token,
                    "value": d.value,
                }
                for d in versions
            ]
            for section in state.sections
            for versions in [drafts[section]]
        },
        "facts": [
            {
                "id": f.id,
                "fact": f.fact,
                "category": f.category,
                "agent_id": f.agent_id,
                "timestamp": f.timestamp.isoformat(),
                "metadata": f.metadata,
            }
            for f in facts
        ],
    }


def dump_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, indent=2) + "\n"
