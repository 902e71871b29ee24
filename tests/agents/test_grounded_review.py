"""Review with the support check on real stores: an unsupported draft is never settled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agentmem.agents import reviewer, writer
from agentmem.agents.documents import Draft, ReviewRecord, draft_key, review_key
from agentmem.agents.idempotency import fact_key
from agentmem.agents.llm_base import LLMNoAnswerError
from agentmem.agents.runtime import Context
from agentmem.agents.settings import Settings
from agentmem.agents.support import check
from agentmem.devservers import ServerUrls
from agentmem.memory import (
    AgentEvent,
    DurableWriter,
    MemoryConfig,
    NewFact,
    WriteAheadLog,
    open_memory,
)
from agentmem.protocol.events import RUN_STREAM, EventType, SectionAssigned, SectionPlan, new_event
from agentmem.protocol.roles import Role
from tests.agents.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.anyio

SECTION = SectionPlan(section_id="streams", title="Redis Streams")
FACTS = [
    "Redis Streams are an append-only log data type that was introduced in Redis 5.0.",
    "A worker reads with XREADGROUP and each entry is delivered to only one consumer.",
    "An entry that was delivered but never acknowledged stays pending.",
]
LOOPING = (
    "It allows you to use a Redis stream as a queue of Redis streams, which allows you to use "
    "a Redis stream as a queue of Redis streams."
)


def looping_draft(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What SmolLM2-135M wrote: a sentence that loops, on a real citation."""
    first = min(int(f["id"]) for f in payload["facts"])
    return {
        "title": payload["section"]["title"],
        "paragraphs": [{"text": LOOPING, "citations": [first]}],
    }


def approve(payload: Mapping[str, Any]) -> dict[str, Any]:
    del payload
    return {"approved": True, "comments": []}


@pytest.fixture
async def context(servers: ServerUrls, namespace: str, tmp_path: Path) -> AsyncIterator[Context]:
    """A writer's and reviewer's context whose model loops, with the section's facts stored."""
    config = MemoryConfig(servers.redis_url, servers.database_url)
    async with open_memory(config, namespace) as m:
        events = m.events(RUN_STREAM)
        wal = WriteAheadLog(tmp_path / "agent.db")
        llm = ScriptedLLM(write=looping_draft, review=approve)
        settings = Settings(review_rounds=2)
        ctx = Context(
            "agent-1",
            Role.WRITER,
            settings,
            m.memory,
            events,
            m.db,
            llm,
            DurableWriter(m.memory, events, wal),
        )
        facts = [
            NewFact(f, SECTION.category, {"source": "s.md", "quote": f}, fact_key("s.md", f))
            for f in FACTS
        ]
        await ctx.durable.store_facts("research-1", facts)
        yield ctx
        wal.close()


async def settle(ctx: Context) -> list[AgentEvent]:
    """Hand the section to the writer, then every handoff on, until it settles."""
    assigned = new_event(
        EventType.SECTION_ASSIGNED, "research-1", SectionAssigned(section=SECTION, facts=3)
    )
    await writer.handle(ctx, assigned)
    handled: set[str] = set()
    for _ in range(10):
        log = await ctx.events.read_events(count=1000)
        pending = [e for e in log if e.event_id not in handled]
        if any(
            e.event_type in (EventType.SECTION_APPROVED, EventType.SECTION_ROUND_LIMIT)
            for e in pending
        ):
            return log
        for event in pending:
            handled.add(event.event_id or "")
            if event.event_type == EventType.SECTION_DRAFTED:
                await reviewer.handle(ctx, event)
            elif event.event_type == EventType.SECTION_REVISION_REQUESTED:
                await writer.handle(ctx, event)
    msg = "the section did not settle"
    raise AssertionError(msg)


async def test_a_looping_draft_goes_back_naming_the_loop_without_asking_the_model(
    context: Context,
) -> None:
    """The check rejects the loop; the review model (which would approve) is not asked."""
    await settle(context)
    record = await context.db.read(review_key(SECTION.section_id, 1))
    assert record is not None
    review = ReviewRecord.model_validate(record.value)

    assert not review.approved
    assert review.decision == EventType.SECTION_REVISION_REQUESTED
    assert "repeat themselves" in review.comments[0]
    assert "queue of Redis streams" in review.comments[0]
    assert review.support is not None
    assert [s.verdict for s in review.support.sentences] == ["loop"]
    assert isinstance(context.llm, ScriptedLLM)
    assert context.llm.calls["review"] == 0


async def test_a_section_still_unsupported_at_the_round_limit_is_written_from_its_facts(
    context: Context,
) -> None:
    """After the last round fails, the writer writes the facts verbatim and that is approved."""
    log = await settle(context)
    settled = log[-1]
    doc = await context.db.read(draft_key(SECTION.section_id), version=settled.payload["version"])
    assert doc is not None
    draft = Draft.model_validate(doc.value)
    facts = await context.memory.get_facts_by_category(SECTION.category)

    assert settled.event_type == EventType.SECTION_APPROVED
    assert settled.payload["version"] == 3
    assert draft.round == 2
    assert draft.extractive is not None
    assert "support check" in draft.extractive
    assert check(draft, facts).grounded
    assert sorted(draft.citations) == sorted(f.id for f in facts)
    assert isinstance(context.llm, ScriptedLLM)
    assert context.llm.calls["write"] == 2


async def test_a_model_that_gives_no_draft_gets_an_extractive_section_said_so(
    context: Context,
) -> None:
    """No usable draft from the model: the facts, verbatim, approved on the checks alone."""

    def no_draft(payload: Mapping[str, Any]) -> dict[str, Any]:
        msg = "no draft fitted"
        raise LLMNoAnswerError(msg)

    assert isinstance(context.llm, ScriptedLLM)
    context.llm.answers["write"] = no_draft
    log = await settle(context)
    doc = await context.db.read(draft_key(SECTION.section_id))
    assert doc is not None
    draft = Draft.model_validate(doc.value)

    assert log[-1].event_type == EventType.SECTION_APPROVED
    assert doc.version == 1
    assert draft.extractive == "the model gave no usable draft"
    assert context.llm.calls["review"] == 0
