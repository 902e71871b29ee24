"""The research step on real stores: plan once, extract each source, hand off each section once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentmem.agents import research
from agentmem.agents.documents import PLAN_KEY, PlanDoc
from agentmem.agents.runtime import Context
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
from agentmem.devservers import ServerUrls
from agentmem.memory import DurableWriter, MemoryConfig, WriteAheadLog, open_memory
from agentmem.protocol.events import (
    RUN_STREAM,
    EventType,
    RunRequested,
    SectionPlan,
    SourceDoc,
    new_event,
)
from agentmem.protocol.roles import Role

pytestmark = pytest.mark.anyio

# Named so that PostgreSQL's jsonb (shorter keys first) orders them unlike the request does.
SOURCES = [
    SourceDoc(
        name=name,
        text=f"# {name}\n\nRedis streams keep entries of {name} in order. Consumer groups share "
        f"the entries of {name} among workers. A pending entry is claimed again after a crash.",
    )
    for name in ("a-long-name.md", "b.md", "cc.md")
]
# Twelve names in an order jsonb does not keep: it stores "s1.md" ... "s9.md" before "s10.md".
MANY = [f"s{n}.md" for n in range(12, 0, -1)]


@pytest.fixture
async def researchers(
    servers: ServerUrls, namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[Context, Context]]:
    """Two research contexts on one namespace, as two research processes would have."""
    config = MemoryConfig(servers.redis_url, servers.database_url)
    async with open_memory(config, namespace) as m:
        events = m.events(RUN_STREAM)
        contexts = []
        for n in (1, 2):
            wal = WriteAheadLog(tmp_path / f"research-{n}.db")
            writer = DurableWriter(m.memory, events, wal)
            ctx = Context(
                f"research-{n}",
                Role.RESEARCH,
                Settings(),
                m.memory,
                events,
                m.db,
                StubLLM(),
                writer,
            )
            contexts.append(ctx)
        yield contexts[0], contexts[1]
        for ctx in contexts:
            ctx.durable.wal.close()


async def test_sources_extracted_by_two_researchers_hand_off_each_section_once(
    researchers: tuple[Context, Context],
) -> None:
    """Whoever extracts a source, every source gives facts and each section goes out once."""
    first, second = researchers
    request = new_event(
        EventType.RUN_REQUESTED, "orchestrator", RunRequested(topic="streams", sources=SOURCES)
    )
    await research.handle(first, request)
    assigned = [
        e for e in await first.events.read_events() if e.event_type == EventType.SOURCE_ASSIGNED
    ]
    assert len(assigned) == len(SOURCES)
    await research.handle(first, assigned[0])  # the planner extracts one source itself
    # the others go to another process: its own context, which has no copy of the plan
    for event in assigned[1:]:
        await research.handle(second, event)
    for event in assigned:  # then every one is delivered again: nothing is repeated
        await research.handle(first, event)

    log = await first.events.read_events(count=1000)
    [planned] = [e for e in log if e.event_type == EventType.RUN_PLANNED]
    facts = [
        fact
        for category in await first.memory.list_categories()
        for fact in await first.memory.get_facts_by_category(category)
    ]
    assert {fact.metadata["source"] for fact in facts} == {source.name for source in SOURCES}
    assert planned.payload["fact_count"] == len(facts)
    handed = [e for e in log if e.event_type == EventType.SECTION_ASSIGNED]
    sections = [e.payload["section"]["section_id"] for e in handed]
    assert sections
    assert len(sections) == len(set(sections))


async def test_extraction_records_are_numbered_alike_as_written_and_as_read_back(
    researchers: tuple[Context, Context],
) -> None:
    """A plan of 12 sources gives each source the same record after a jsonb round trip."""
    ctx, _ = researchers
    plan = PlanDoc(
        topic="streams",
        sections=[SectionPlan(section_id="streams", title="Streams")],
        source_sections=dict.fromkeys(MANY, "streams"),
    )
    written = await ctx.db.write(PLAN_KEY, plan.model_dump(mode="json"), "research-1", 0)
    read = await ctx.db.read(PLAN_KEY)
    assert read is not None
    as_read = PlanDoc.model_validate(read.value)
    assert list(as_read.source_sections) != MANY  # the premise: jsonb reordered the keys

    records = PlanDoc.model_validate(written.value).records()
    assert records == as_read.records()
    assert len(set(records.values())) == len(MANY)


async def test_the_planner_extracts_with_the_plan_it_wrote_and_another_with_the_plan_it_read(
    researchers: tuple[Context, Context],
) -> None:
    """The planner keeps its plan as written, another researcher reads it back: 12 sources
    extracted half by each are recorded once each, and all of them reach the hand-off."""
    first, second = researchers
    sources = [
        SourceDoc(name=name, text=SOURCES[0].text.replace("a-long-name.md", name)) for name in MANY
    ]
    request = new_event(
        EventType.RUN_REQUESTED, "orchestrator", RunRequested(topic="streams", sources=sources)
    )
    await research.handle(first, request)
    assert first.plan is not None
    assert second.plan is None  # each run's context keeps its own copy
    assigned = [
        e
        for e in await first.events.read_events(count=100)
        if e.event_type == EventType.SOURCE_ASSIGNED
    ]
    for n, event in enumerate(assigned):
        await research.handle(first if n % 2 else second, event)

    plan = await first.db.read(PLAN_KEY)
    assert plan is not None
    records = await first.db.read_many(list(PlanDoc.model_validate(plan.value).records().values()))
    assert sorted(r.value["source"] for r in records.values()) == sorted(MANY)
    log = await first.events.read_events(count=1000)
    [planned] = [e for e in log if e.event_type == EventType.RUN_PLANNED]
    facts = [
        fact
        for category in await first.memory.list_categories()
        for fact in await first.memory.get_facts_by_category(category)
    ]
    assert {fact.metadata["source"] for fact in facts} == set(MANY)
    assert planned.payload["fact_count"] == len(facts)
