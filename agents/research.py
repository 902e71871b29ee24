"""The research agent: plans the report's sections and stores the facts its sources support.

On ``run.requested`` it asks the LLM for a plan (one section per theme), extracts facts from
each source (the LLM picks them by sentence number, so each fact's quote is a verbatim
sentence of its source), and stores them as shared facts, one category per section. Then
it hands every section that has facts to the writers. Each step is idempotent, so a
redelivered request repeats nothing:

- the plan is stored once, as the document ``run/plan`` (``expected_version=0``), and reused;
- a source whose facts are already stored is not extracted again, and every fact carries an
  idempotency key (hash of source name and quote), so a retry never duplicates one;
- the plan document records that the handoffs were published, so they are published once.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from agents.documents import PLAN_KEY, PlanDoc
from agents.keys import assigned_key, fact_key, planned_key
from agents.llm_base import LLMNoAnswerError
from agents.models import Extraction, Plan
from agents.prompts import load_prompt
from agents.protocol import (
    EventType,
    RunPlanned,
    RunRequested,
    SectionAssigned,
    SectionPlan,
    SourceDoc,
    payload_as,
)
from agents.runtime import Context
from agents.schemas import Bounds
from agents.sentences import numbered, sentences
from agents.untrusted import quote
from memory.errors import ConflictError
from memory.events import AgentEvent
from memory.facts import Fact, NewFact
from memory.shared_db import Document

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 800  # of each source, for the plan (a small model's context is short)
MAX_FACTS_PER_SOURCE = 8


async def handle(ctx: Context, event: AgentEvent) -> None:
    """Plan, extract and store facts, then hand each section to the writers (once)."""
    request = payload_as(event, RunRequested)
    stored = await _stored_plan(ctx, request, event.agent_id)
    plan = PlanDoc.model_validate(stored.value)
    if plan.published:
        logger.info("run already planned and handed off; nothing to do")
        return
    sections = plan.sections
    fact_keys = await _extract_all(
        ctx, request, plan, planned_by=stored.agent_id, requested_by=event.agent_id
    )

    planned = [s for s in sections if fact_keys[s.section_id]]
    for dropped in (s for s in sections if not fact_keys[s.section_id]):
        logger.warning("section %s has no facts in the sources; dropped", dropped.section_id)
    fact_count = sum(len(fact_keys[s.section_id]) for s in planned)
    ran = RunPlanned(topic=request.topic, sections=planned, fact_count=fact_count)
    await ctx.status(f"handing off {len(planned)} sections ({fact_count} facts)")
    await ctx.writer.publish(ctx.event(EventType.RUN_PLANNED, ran), idempotency_key=planned_key())
    for section in planned:
        assigned = ctx.event(EventType.SECTION_ASSIGNED, SectionAssigned(section=section))
        await ctx.writer.publish(assigned, idempotency_key=assigned_key(section.section_id))
    done = plan.model_copy(update={"published": True, "planned": ran})
    await ctx.db.write(
        PLAN_KEY, done.model_dump(mode="json"), ctx.agent_id, expected_version=stored.version
    )
    logger.info("planned %d sections with %d facts", len(planned), fact_count)


async def _stored_plan(ctx: Context, request: RunRequested, requested_by: str) -> Document:
    """The run's plan: the stored one if there is one, else a new one from the LLM, stored."""
    existing = await ctx.db.read(PLAN_KEY)
    if existing is not None:
        return existing
    await ctx.status("planning sections")
    plan = await ctx.llm.generate(
        task="plan",
        instructions=load_prompt("research"),
        payload=plan_request(request, requested_by),
        output=Plan,
        bounds=plan_bounds(request),
    )
    value = PlanDoc(
        topic=request.topic,
        sections=[s.plan() for s in plan.sections],
        source_sections=_source_sections(plan, request),
    )
    try:
        return await ctx.db.write(
            PLAN_KEY, value.model_dump(mode="json"), ctx.agent_id, expected_version=0
        )
    except ConflictError:  # another research instance stored its plan first: use that one
        stored = await ctx.db.read(PLAN_KEY)
        assert stored is not None
        return stored


def plan_request(request: RunRequested, requested_by: str) -> dict[str, Any]:
    """The input of the "plan" task: the topic and an excerpt of each source, quoted."""
    return {
        "topic": request.topic,
        "sources": [
            {
                "name": s.name,
                "excerpt": quote(s.text[:EXCERPT_CHARS], written_by=requested_by, source=s.name),
            }
            for s in request.sources
        ],
    }


def plan_bounds(request: RunRequested) -> Bounds:
    """The plan's schema for this run: sources by name, at most a section per source."""
    names = [s.name for s in request.sources]
    return Bounds(
        enums={"sections.sources": names},
        max_items={"sections": max(1, min(len(names), 20)), "sections.sources": len(names)},
        max_length={"sections.section_id": 40, "sections.title": 80, "sections.description": 200},
    )


def extract_request(
    topic: str,
    sections: list[SectionPlan],
    *,
    section_id: str,
    source: SourceDoc,
    requested_by: str,
    planned_by: str,
) -> dict[str, Any]:
    """The input of the "extract" task: the plan, and one source's sentences, numbered, quoted."""
    prose = numbered(sentences(source.text))
    return {
        "topic": topic,
        "sections": [s.quoted(planned_by) for s in sections],
        "section_id": section_id,
        "source": {
            "name": source.name,
            "sentences": quote(prose, written_by=requested_by, source=source.name),
        },
    }


def extract_bounds(section_id: str, sentence_count: int) -> Bounds:
    """The extraction's schema for one source: its sentence numbers, the section it feeds."""
    return Bounds(
        enums={
            "facts.sentence": list(range(1, sentence_count + 1)),
            "facts.section_id": [section_id],
        },
        max_items={"facts": min(MAX_FACTS_PER_SOURCE, sentence_count)},
    )


def _source_sections(plan: Plan, request: RunRequested) -> dict[str, str]:
    """Which section each source's facts are extracted for (the first section naming it)."""
    owner: dict[str, str] = {}
    for section in plan.sections:
        for name in section.sources:
            owner.setdefault(name, section.section_id)
    fallback = plan.sections[0].section_id
    return {s.name: owner.get(s.name, fallback) for s in request.sources}


async def _extract_all(
    ctx: Context, request: RunRequested, plan: PlanDoc, *, planned_by: str, requested_by: str
) -> dict[str, set[str]]:
    """Extract and store each source's facts; returns the facts' keys per section."""
    sections = plan.sections
    fact_keys: dict[str, set[str]] = {s.section_id: set() for s in sections}
    stored = await _stored_facts(ctx, sections)
    for fact in stored:
        fact_keys[fact.category].add(fact_key(fact.metadata["source"], fact.metadata["quote"]))
    done = {fact.metadata.get("source") for fact in stored}

    async def extract(source_index: int) -> None:
        source = request.sources[source_index]
        prose = sentences(source.text)
        if not prose:
            logger.warning("%s has no prose sentences; no facts from it", source.name)
            return
        await ctx.status(f"extracting facts from {source.name}")
        section_id = plan.source_sections[source.name]
        payload = extract_request(
            request.topic,
            sections,
            section_id=section_id,
            source=source,
            requested_by=requested_by,
            planned_by=planned_by,
        )
        try:
            extraction = await ctx.llm.generate(
                task="extract",
                instructions=load_prompt("research"),
                payload=payload,
                output=Extraction,
                bounds=extract_bounds(section_id, len(prose)),
            )
        except LLMNoAnswerError as exc:  # a weak model: this source gives no fact, the run goes on
            logger.warning("no usable facts from %s: %s", source.name, exc)
            return
        facts = _verified(extraction, source.name, prose, set(fact_keys))
        if not await ctx.writer.store_facts(ctx.agent_id, facts):
            logger.warning("Redis unreachable: %d facts kept in the local log", len(facts))
        for fact in facts:
            fact_keys[fact.category].add(fact.idempotency_key or "")
        logger.info("stored %d facts from %s", len(facts), source.name)

    async with anyio.create_task_group() as tg:
        for index, source in enumerate(request.sources):
            if source.name in done:
                logger.info("facts from %s already stored; not extracting again", source.name)
            else:
                tg.start_soon(extract, index)
    return fact_keys


async def _stored_facts(ctx: Context, sections: list[SectionPlan]) -> list[Fact]:
    """Every fact already stored for the planned sections (from an earlier attempt)."""
    found: list[Fact] = []

    async def fetch(category: str) -> None:
        found.extend(await ctx.memory.get_facts_by_category(category))

    async with anyio.create_task_group() as tg:
        for section in sections:
            tg.start_soon(fetch, section.category)
    return found


def _verified(
    extraction: Extraction, source_name: str, prose: list[str], section_ids: set[str]
) -> list[NewFact]:
    """The extracted facts worth storing: the source sentences they name, verbatim."""
    facts: list[NewFact] = []
    for item in extraction.facts:
        if item.section_id not in section_ids or not 1 <= item.sentence <= len(prose):
            logger.warning(
                "dropped a fact from %s: section %r or sentence %d unknown",
                source_name,
                item.section_id,
                item.sentence,
            )
            continue
        # The fact is the sentence itself: a model's restatement can drift from its quote.
        quoted = prose[item.sentence - 1]
        metadata: dict[str, Any] = {"source": source_name, "quote": quoted}
        facts.append(NewFact(quoted, item.section_id, metadata, fact_key(source_name, quoted)))
    return facts
