"""The research step on real stores: plan once, extract each source, hand off each section once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents import research
from agents.protocol import RUN_STREAM, EventType, RunRequested, SourceDoc, new_event
from agents.roles import Role
from agents.runtime import Context
from agents.settings import Settings
from agents.stub_llm import StubLLM
from devservers import ServerUrls
from memory import DurableWriter, MemoryConfig, WriteAheadLog, open_memory

pytestmark = pytest.mark.anyio

SOURCES = [
    SourceDoc(
        name=f"{n}.md",
        text=f"# Topic {n}\n\nRedis streams keep entry {n} in order. Consumer groups share "
        f"entry {n} among workers. A pending entry {n} is claimed again after a crash.",
    )
    for n in range(1, 4)
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
            ctx.writer.wal.close()


async def test_sources_extracted_by_two_researchers_hand_off_each_section_once(
    researchers: tuple[Context, Context],
) -> None:
    """Whichever researcher extracts a source, and however often, each section goes out once."""
    first, second = researchers
    request = new_event(
        EventType.RUN_REQUESTED, "orchestrator", RunRequested(topic="streams", sources=SOURCES)
    )
    await research.handle(first, request)
    assigned = [
        e for e in await first.events.read_events() if e.event_type == EventType.SOURCE_ASSIGNED
    ]
    assert len(assigned) == len(SOURCES)
    for n, event in enumerate(assigned):  # shared out, then all delivered again to the other
        await research.handle(first if n % 2 else second, event)
    for event in assigned:
        await research.handle(second, event)

    log = await first.events.read_events(count=1000)
    planned = [e for e in log if e.event_type == EventType.RUN_PLANNED]
    sections = [
        e.payload["section"]["section_id"] for e in log if e.event_type == "section.assigned"
    ]
    assert len(planned) == 1
    assert sections
    assert len(sections) == len(set(sections))
    assert await first.memory.count_facts() >= len(SOURCES)
