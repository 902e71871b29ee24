"""Plan repair: a model's plan that fails to cover the sources is mended, and says how."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agentmem.agents import research
from agentmem.agents.documents import PLAN_KEY, PlanDoc
from agentmem.agents.llm_base import LLMNoAnswerError
from agentmem.agents.llm_output import Plan
from agentmem.agents.planning import repair
from agentmem.agents.runtime import Context
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import plan
from agentmem.devservers import ServerUrls
from agentmem.memory import DurableWriter, MemoryConfig, WriteAheadLog, open_memory
from agentmem.protocol.events import RUN_STREAM, EventType, RunRequested, SourceDoc, new_event
from agentmem.protocol.roles import Role
from tests.agents.scripted_llm import ScriptedLLM

SOURCES = [
    SourceDoc(name="streams.md", text="# Redis Streams\n\nRedis Streams keep entries in order."),
    SourceDoc(name="locks.md", text="# Distributed locks\n\nA lock has an expiry in milliseconds."),
    SourceDoc(
        name="fencing.md", text="# Fencing tokens for locks\n\nEach lock grant gets a token."
    ),
    SourceDoc(name="wal.md", text="# Write-ahead logging\n\nA log records each change first."),
]
TOPIC = "Shared memory for agents"
NAMES = [s.name for s in SOURCES]


def smollm_plan(payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What SmolLM2-135M planned: every source in one section whose id loops, and a second
    section that names no source."""
    del payload
    looping = "01-redis-streams-streams-streams"
    return {
        "sections": [
            {"section_id": looping, "title": looping, "sources": [*NAMES, NAMES[0]]},
            {"section_id": "locks-and-fencing", "title": "Locks and Fencing", "sources": []},
        ]
    }


def test_a_plan_with_every_source_in_one_section_is_split_by_subject() -> None:
    """One section for distinct subjects is split by shared subject words; the empty one goes."""
    repaired, repairs = repair(Plan.model_validate(smollm_plan()), SOURCES, TOPIC)

    assert [s.sources for s in repaired.sections] == [
        ["streams.md"],
        ["locks.md", "fencing.md"],  # "locks" is their shared subject
        ["wal.md"],
    ]
    assert next(s.title for s in repaired.sections) == "Redis Streams"
    said = " ".join(repairs)
    assert "listed twice" in said
    assert "loops" in said
    assert "names no source" in said
    assert "split into 3 sections" in said


def test_a_source_no_section_names_joins_the_section_sharing_its_subject() -> None:
    """An unassigned source goes where its subject words are, or into a section of its own."""
    model = Plan.model_validate(
        {"sections": [{"section_id": "locks", "title": "Locks", "sources": ["locks.md"]},
                      {"section_id": "streams", "title": "Streams", "sources": ["streams.md"]}]}
    )  # fmt: skip
    repaired, repairs = repair(model, SOURCES, TOPIC)

    assert [s.sources for s in repaired.sections] == [
        ["locks.md", "fencing.md"],
        ["streams.md"],
        ["wal.md"],
    ]
    assert len(repairs) == 2


def test_the_stubs_plan_needs_no_repair() -> None:
    """A plan that covers every source with fillable sections is kept as it is."""
    stub = plan({"sources": [{"name": s.name, "excerpt": s.text} for s in SOURCES]})

    assert repair(stub, SOURCES, TOPIC) == (stub, [])


@pytest.fixture
async def weak_researcher(
    servers: ServerUrls, namespace: str, tmp_path: Path
) -> AsyncIterator[Context]:
    """A research context whose model plans badly and extracts nothing usable."""

    def no_extraction(payload: Mapping[str, Any]) -> dict[str, Any]:
        msg = "no extraction fitted"
        raise LLMNoAnswerError(msg)

    llm = ScriptedLLM(plan=smollm_plan, extract=no_extraction)
    async with open_memory(MemoryConfig(servers.redis_url, servers.database_url), namespace) as m:
        events = m.events(RUN_STREAM)
        wal = WriteAheadLog(tmp_path / "research.db")
        writer = DurableWriter(m.memory, events, wal)
        yield Context("research-1", Role.RESEARCH, Settings(), m.memory, events, m.db, llm, writer)
        wal.close()


@pytest.mark.anyio
async def test_a_weak_models_plan_is_repaired_stored_and_every_source_gives_facts(
    weak_researcher: Context,
) -> None:
    """The repaired plan is the stored one, with its repairs; every source gives facts."""
    ctx = weak_researcher
    request = RunRequested(topic=TOPIC, sources=SOURCES)
    await research.handle(ctx, new_event(EventType.RUN_REQUESTED, "orchestrator", request))
    for event in await ctx.events.read_events(count=100):
        if event.event_type == EventType.SOURCE_ASSIGNED:
            await research.handle(ctx, event)
    stored = await ctx.db.read(PLAN_KEY)
    assert stored is not None
    doc = PlanDoc.model_validate(stored.value)
    facts = [f for s in doc.sections for f in await ctx.memory.get_facts_by_category(s.section_id)]

    assert len(doc.sections) == 3
    assert doc.repairs
    assert doc.planned is not None
    assert doc.planned.without_facts == []
    assert {f.metadata["source"] for f in facts} == set(NAMES)
    assert isinstance(ctx.llm, ScriptedLLM)
    assert ctx.llm.calls["extract"] == len(SOURCES)
