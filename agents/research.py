"""The research agent: plans the report's sections and stores the facts its sources support.

The work is split through the research consumer group, so several research processes share it:

- on ``run.requested`` one of them asks the LLM for a plan (one section per theme), repairs
  it where it fails to cover the sources (:mod:`agents.planning`: each repair logged and kept
  in the plan), and hands every source out as a ``source.assigned`` event;
- on ``source.assigned`` any of them extracts that source's facts (the LLM picks them by
  sentence number, so each fact's quote is a verbatim sentence of its source; a model that
  picks none usable gets the stub's informative sentences instead), stores them as
  shared facts (one category per section), and records the source as done in its own
  document ``run/extracted/<n>`` (written once: researchers never contend for it);
- the researcher whose record completes the set (it reads them all, in one query, after
  writing its own) publishes ``run.planned`` and hands every section that has facts to the
  writers.

Each step is idempotent, so a redelivered handoff repeats nothing:

- the plan is stored once, as the document ``run/plan`` (``expected_version=0``), and reused;
- every handoff is published under an idempotency key (:mod:`agents.idempotency`);
- a source with a record is not extracted again, and every fact carries an idempotency key
  (hash of source name and quote), so a retry never duplicates one;
- the completeness check runs after every record (even a repeated one), so a researcher that
  crashed after completing the record has its handoffs published by the redelivery.
"""

from __future__ import annotations

import logging
from typing import Any

from agentmem.agents import planning, stub_llm
from agentmem.agents.documents import (
    PLAN_KEY,
    ExtractedDoc,
    PlanDoc,
    SourceExtracted,
)
from agentmem.agents.idempotency import assigned_key, fact_key, planned_key, source_key
from agentmem.agents.llm_base import LLMNoAnswerError
from agentmem.agents.llm_output import Extraction, Plan
from agentmem.agents.prompts import load_prompt
from agentmem.agents.runtime import Context
from agentmem.agents.schemas import Bounds
from agentmem.agents.sentences import numbered, sentences
from agentmem.agents.untrusted import quote, quoted_section
from agentmem.memory import AgentEvent, ConflictError, Document, NewFact
from agentmem.protocol.events import (
    EventType,
    ProtocolError,
    RunPlanned,
    RunRequested,
    SectionAssigned,
    SectionPlan,
    SourceAssigned,
    SourceDoc,
    payload_as,
)

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 800  # of each source, for the plan (a small model's context is short)
MAX_FACTS_PER_SOURCE = 8
MIN_FACTS_PER_SOURCE = 3


async def handle(ctx: Context, event: AgentEvent) -> None:
    """Plan and hand out the sources, or extract one source (and hand off once all are)."""
    if event.event_type == EventType.RUN_REQUESTED:
        await plan_run(ctx, event)
    else:
        await extract_source(ctx, event)


async def plan_run(ctx: Context, event: AgentEvent) -> None:
    """Store the plan (once) and hand every source to the research group (once each)."""
    request = payload_as(event, RunRequested)
    stored = await _stored_plan(ctx, request, event.agent_id)
    plan = PlanDoc.model_validate(stored.value)
    if plan.published:
        logger.info("run already planned and handed off; nothing to do")
        return
    await ctx.status(f"handing out {len(request.sources)} sources")
    handoffs = [
        (
            ctx.event(
                EventType.SOURCE_ASSIGNED,
                SourceAssigned(
                    source=source,
                    section_id=plan.source_sections[source.name],
                    requested_by=event.agent_id,
                ),
            ),
            source_key(source.name),
        )
        for source in request.sources
    ]
    await ctx.durable.publish_many(handoffs)  # logged together, each published once
    logger.info(
        "planned %d sections; handed out %d sources", len(plan.sections), len(request.sources)
    )


async def extract_source(ctx: Context, event: AgentEvent) -> None:
    """Extract one source's facts (unless recorded), record it, hand off if it was the last."""
    assigned = payload_as(event, SourceAssigned)
    stored = await _plan(ctx)
    if stored is None:
        msg = f"source {assigned.source.name!r} was handed out before the run's plan was stored"
        raise ProtocolError(msg)
    plan = PlanDoc.model_validate(stored.value)
    name = assigned.source.name
    records = plan.records()
    if name not in records:
        msg = f"source {name!r} was handed out but is not in the run's plan"
        raise ProtocolError(msg)
    mine = records[name]
    if await ctx.db.read(mine) is not None:
        logger.info("facts from %s already stored; not extracting again", name)
    else:
        keys = await _extract(ctx, plan, assigned, planned_by=stored.agent_id)
        await _record(ctx, mine, name, keys)
    found = await ctx.db.read_many(list(records.values()))  # after this one's: the last sees all
    if len(found) < len(records):
        await ctx.status(f"{len(records) - len(found)} sources still to extract")
        return
    extracted = ExtractedDoc(
        sources={r.source: r.sections for r in map(_source_record, found.values())}
    )
    await _hand_off(ctx, plan, extracted, stored)


async def _hand_off(ctx: Context, plan: PlanDoc, extracted: ExtractedDoc, stored: Document) -> None:
    """Publish ``run.planned`` and one ``section.assigned`` per section with facts (once)."""
    fact_keys = extracted.fact_keys()
    planned = [s for s in plan.sections if fact_keys.get(s.section_id)]
    empty = [s for s in plan.sections if not fact_keys.get(s.section_id)]
    for dropped in empty:
        logger.warning("section %s has no facts in the sources; left out", dropped.section_id)
    fact_count = sum(len(fact_keys[s.section_id]) for s in planned)
    ran = RunPlanned(topic=plan.topic, sections=planned, fact_count=fact_count, without_facts=empty)
    await ctx.status(f"handing off {len(planned)} sections ({fact_count} facts)")
    await ctx.durable.publish_many(
        [
            (ctx.event(EventType.RUN_PLANNED, ran), planned_key()),
            *(
                (
                    ctx.event(
                        EventType.SECTION_ASSIGNED,
                        SectionAssigned(section=section, facts=len(fact_keys[section.section_id])),
                    ),
                    assigned_key(section.section_id),
                )
                for section in planned
            ),
        ]
    )
    done = plan.model_copy(update={"published": True, "planned": ran})
    try:
        await ctx.db.write(
            PLAN_KEY, done.model_dump(mode="json"), ctx.agent_id, expected_version=stored.version
        )
    except ConflictError:  # another researcher recorded the same hand-off first
        logger.info("the hand-off was already recorded")
    logger.info("planned %d sections with %d facts", len(planned), fact_count)


def _source_record(document: Document) -> SourceExtracted:
    return SourceExtracted.model_validate(document.value)


async def _record(ctx: Context, key: str, source_name: str, keys: dict[str, set[str]]) -> None:
    """Write the source's record once; one already there (a redelivery's) is the same."""
    record = SourceExtracted(
        source=source_name,
        sections={section_id: sorted(found) for section_id, found in keys.items() if found},
    )
    try:
        await ctx.db.write(key, record.model_dump(mode="json"), ctx.agent_id, expected_version=0)
    except ConflictError:
        logger.info("source %s was recorded by another delivery first", source_name)


async def _plan(ctx: Context) -> Document | None:
    """The run's stored plan, or None if there is none yet.

    Kept on the run's context (``ctx.plan``) once read or written: what extraction uses (topic,
    sections, which source feeds which) never changes once stored; only ``published`` does,
    and a stale copy of it costs a repeated, idempotent hand-off at most. Twenty sources
    extracted at once otherwise read it twenty times, each on a pooled connection of its own.
    """
    if ctx.plan is None:
        ctx.plan = await ctx.db.read(PLAN_KEY)
    return ctx.plan


async def _stored_plan(ctx: Context, request: RunRequested, requested_by: str) -> Document:
    """The run's plan: the stored one if there is one, else a new one from the LLM, stored."""
    existing = await ctx.db.read(PLAN_KEY)
    if existing is not None:
        ctx.plan = existing
        return existing
    await ctx.status("planning sections")
    plan = await ctx.llm.generate(
        task="plan",
        instructions=load_prompt("research"),
        payload=plan_request(request, requested_by),
        output=Plan,
        bounds=plan_bounds(request),
    )
    plan, repairs = planning.repair(plan, request.sources, request.topic)
    for repair in repairs:
        logger.warning("plan repaired: %s", repair)
    value = PlanDoc(
        topic=request.topic,
        sections=[s.plan() for s in plan.sections],
        source_sections=_source_sections(plan, request),
        repairs=repairs,
    )
    try:
        # Kept as written: its ``source_sections`` is in the LLM's order, not jsonb's, which
        # does not matter (PlanDoc.records numbers the sources by name).
        stored = await ctx.db.write(
            PLAN_KEY, value.model_dump(mode="json"), ctx.agent_id, expected_version=0
        )
    except ConflictError:  # another research instance stored its plan first: use that one
        read = await ctx.db.read(PLAN_KEY)
        assert read is not None
        stored = read
    ctx.plan = stored
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
        # short: the plan is the one call every other waits for, and a small model fills
        # every string it is allowed to
        max_length={"sections.section_id": 32, "sections.title": 60, "sections.description": 120},
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
        "sections": [quoted_section(s, written_by=planned_by) for s in sections],
        "section_id": section_id,
        "source": {
            "name": source.name,
            "sentences": quote(prose, written_by=requested_by, source=source.name),
        },
    }


def extract_bounds(sentence_count: int) -> Bounds:
    """The extraction's schema for one source: a few of its sentence numbers (at least
    :data:`MIN_FACTS_PER_SOURCE`: a small model otherwise answers with an empty list)."""
    return Bounds(
        enums={"sentences": list(range(1, sentence_count + 1))},
        max_items={"sentences": min(MAX_FACTS_PER_SOURCE, sentence_count)},
        min_items={"sentences": min(MIN_FACTS_PER_SOURCE, sentence_count)},
    )


def _source_sections(plan: Plan, request: RunRequested) -> dict[str, str]:
    """Which section each source's facts are extracted for (the first section naming it)."""
    owner: dict[str, str] = {}
    for section in plan.sections:
        for name in section.sources:
            owner.setdefault(name, section.section_id)
    fallback = plan.sections[0].section_id
    return {s.name: owner.get(s.name, fallback) for s in request.sources}


async def _extract(
    ctx: Context, plan: PlanDoc, assigned: SourceAssigned, *, planned_by: str
) -> dict[str, set[str]]:
    """Extract and store one source's facts; returns the facts' keys per section."""
    source = assigned.source
    prose = sentences(source.text)
    if not prose:
        logger.warning("%s has no prose sentences; no facts from it", source.name)
        return {}
    await ctx.status(f"extracting facts from {source.name}")
    payload = extract_request(
        plan.topic,
        plan.sections,
        section_id=assigned.section_id,
        source=source,
        requested_by=assigned.requested_by,
        planned_by=planned_by,
    )
    try:
        extraction = await ctx.llm.generate(
            task="extract",
            instructions=load_prompt("research"),
            payload=payload,
            output=Extraction,
            bounds=extract_bounds(len(prose)),
        )
    except LLMNoAnswerError as exc:  # a weak model: the stub's rule picks, the run goes on
        logger.warning(
            "no usable facts from %s (%s); picking them as the stub does", source.name, exc
        )
        extraction = stub_llm.extract({"source": {"sentences": numbered(prose)}})
        if not extraction.sentences:  # only short sentences: the first ones
            first = min(MIN_FACTS_PER_SOURCE, len(prose))
            extraction = Extraction(sentences=list(range(1, first + 1)))
    facts = _verified(extraction, source.name, prose, assigned.section_id)
    if not await ctx.durable.store_facts(ctx.agent_id, facts):
        logger.warning("Redis unreachable: %d facts kept in the local log", len(facts))
    keys: dict[str, set[str]] = {}
    for fact in facts:
        keys.setdefault(fact.category, set()).add(fact.idempotency_key or "")
    logger.info("stored %d facts from %s", len(facts), source.name)
    return keys


def _verified(
    extraction: Extraction, source_name: str, prose: list[str], section_id: str
) -> list[NewFact]:
    """The extracted facts worth storing: the source sentences they name, verbatim, each a
    fact of the section the source feeds."""
    facts: list[NewFact] = []
    for number in extraction.sentences[:MAX_FACTS_PER_SOURCE]:
        if not 1 <= number <= len(prose):
            logger.warning("dropped a fact from %s: it has no sentence %d", source_name, number)
            continue
        # The fact is the sentence itself: a model's restatement can drift from its quote.
        quoted = prose[number - 1]
        metadata: dict[str, Any] = {"source": source_name, "quote": quoted}
        facts.append(NewFact(quoted, section_id, metadata, fact_key(source_name, quoted)))
    return facts
