"""The research step on real stores: plan once, extract each source, hand off each section once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentmem.agents import research
from agentmem.agents.runtime import Context
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
from agentmem.devservers import ServerUrls
from agentmem.memory import DurableWriter, MemoryConfig, WriteAheadLog, open_memory
from agentmem.protocol.events import RUN_STREAM, EventType, RunRequested, SourceDoc, new_event
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
    research.forget_plans()  # the others go to another process, which has no copy of the plan
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
