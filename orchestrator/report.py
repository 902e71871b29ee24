"""The run's outputs: the report in markdown and a machine-readable record of the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio

from agents.documents import Draft, draft_key
from agents.protocol import SectionState
from memory.agent_event import AgentEvent
from memory.agent_memory import RedisAgentMemory
from memory.events import EventStore
from memory.facts import Fact
from memory.shared_db import Document, SharedAgentDB
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


def cited_ids(drafts: dict[str, Document]) -> list[int]:
    """Every fact id cited by the drafts, in order of first citation (read from their data)."""
    ids: dict[int, None] = {}
    for doc in drafts.values():
        ids.update(dict.fromkeys(Draft.model_validate(doc.value).citations))
    return list(ids)


def render_markdown(
    run_id: str, state: RunState, drafts: dict[str, Document], facts: list[Fact]
) -> str:
    """The report: title, every section once in plan order, then the facts it cites."""
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {state.topic}",
        "",
        f"*Run `{run_id}`, {created}. {len(drafts)} sections written by the writing agents "
        f"from {state.fact_count} facts the research agent extracted from the sources, each "
        "approved by the review agent.*",
        "",
    ]
    for section_id, doc in drafts.items():
        section = state.sections[section_id]
        lines.append(Draft.model_validate(doc.value).to_markdown().strip())
        approved = section.state == SectionState.APPROVED
        verdict = "approved" if approved else "accepted at the round limit"
        lines += [
            "",
            f"*Draft version {doc.version}, {section.revisions} revision(s), {verdict}.*",
            "",
        ]
    lines += ["## Facts cited", ""]
    for fact in facts:
        source = fact.metadata.get("source", "unknown source")
        lines.append(f"- **[F{fact.id}]** {fact.fact} — *source: {source}*")
    lines += [
        "",
        "---",
        f"Every [F*n*] is a shared fact in Redis (namespace `{run_id}`); every draft version "
        "is kept in PostgreSQL; the full event log is in the run's record "
        f"(`{run_id}.json`).",
        "",
    ]
    return "\n".join(lines)


async def run_record(
    state: RunState,
    memory: RedisAgentMemory,
    events: EventStore,
    db: SharedAgentDB,
    *,
    run_id: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Everything about the run: events, every draft version, every fact, timings."""
    log: list[AgentEvent] = []
    since = "0-0"
    while page := await events.read_events(since=since, count=1000):
        log += page
        since = page[-1].event_id or since
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
