"""The writing agent: writes (or revises) one section into the versioned draft store.

On ``section.assigned`` (round 0) or ``section.revision_requested`` (round n) it holds the
section's lock, writes a new version of ``section/<id>`` from the section's facts, and hands
the version to review. The write carries the version it read (optimistic locking) and the
lock's fencing token, so a writer that lost its lease, or raced another writer, cannot
clobber a newer draft. A round past the review limit (review found every draft unsupported)
and a model that gives no usable draft are answered extractively: the section is its facts,
verbatim, and the draft says why (``extractive``), so the report can say so. A repeated
handoff writes nothing: if the draft already has a version for that round, the writer hands
that version to review again.
"""

from __future__ import annotations

import logging
from typing import Any

from agentmem.agents import stub_llm
from agentmem.agents.documents import PLAN_KEY, Draft, PlanDoc, draft_key
from agentmem.agents.idempotency import drafted_key
from agentmem.agents.llm_base import LLMNoAnswerError
from agentmem.agents.llm_output import Paragraph, SectionDraft
from agentmem.agents.prompts import load_prompt
from agentmem.agents.runtime import Context
from agentmem.agents.schemas import Bounds
from agentmem.agents.untrusted import Quoted, quote, quoted_facts, quoted_section
from agentmem.memory import AgentEvent, Document, Fact
from agentmem.protocol.events import (
    EventType,
    ProtocolError,
    SectionAssigned,
    SectionDrafted,
    SectionPlan,
    SectionRevisionRequested,
    parse_payload,
)

logger = logging.getLogger(__name__)

MAX_PARAGRAPHS = 4  # in the draft's schema (see write_bounds)
PARAGRAPH_CITATIONS = 4  # fact ids a paragraph may cite
MAX_FALLBACK = 30  # paragraphs of a draft made from the facts when the LLM gives none


async def handle(ctx: Context, event: AgentEvent) -> None:
    """Write the section for the requested round (once) and hand it to review."""
    section: SectionPlan | None
    expected = 0  # how many facts research stored for the section, when known
    match parse_payload(event):
        case SectionAssigned(section=section, facts=expected):
            section_id, round_, comments = section.section_id, 0, []
        case SectionRevisionRequested() as revision:
            section, section_id, round_ = None, revision.section_id, revision.round
            comments = [quote(c, written_by=event.agent_id) for c in revision.comments]
        case other:
            msg = f"the writer does not handle {type(other).__name__} ({event.event_type})"
            raise ProtocolError(msg)

    key = draft_key(section_id)
    ttl = ctx.settings.lock_ttl_seconds
    # Wait longer than one lease: a holder that died releases the lock by expiry at the latest.
    lock = ctx.memory.lock(
        f"section-{section_id}", ctx.agent_id, ttl_seconds=ttl, timeout=ttl * 1.5
    )
    async with lock as held:
        docs = await ctx.db.read_many([key, PLAN_KEY])
        current = docs.get(key)
        plan = docs.get(PLAN_KEY)
        topic = PlanDoc.model_validate(plan.value).topic if plan is not None else ""
        planned_by = plan.agent_id if plan is not None else event.agent_id
        draft = Draft.model_validate(current.value) if current is not None else None
        if draft is not None and draft.round > round_:
            logger.info("%s is already at round %d; stale handoff", key, draft.round)
            return
        if current is None or draft is None or draft.round < round_:
            if section is None:
                section = _section_of(draft, section_id)
            if draft is not None:
                expected = max(expected, draft.facts)
            await ctx.status(f"writing section {section_id} (round {round_})")
            facts = await ctx.facts_of(section.category, expected)
            value = await _write(
                ctx,
                write_request(
                    topic,
                    quoted_section(section, written_by=planned_by),
                    facts,
                    previous=current,
                    comments=comments,
                ),
                section=section,
                facts=facts,
                round_=round_,
                expected=expected,
                past_limit=round_ >= ctx.settings.review_rounds,
            )
            held.check()  # the lease must still be ours right before the write
            current = await ctx.db.write(
                key,
                value.model_dump(mode="json"),
                ctx.agent_id,
                expected_version=current.version if current is not None else 0,
                fencing_token=held.fencing_token,
            )
            logger.info("wrote %s version %d (round %d)", key, current.version, round_)
        else:
            logger.info("%s already has round %d; handing it to review again", key, round_)
        drafted = SectionDrafted(section_id=section_id, version=current.version, round=round_)
        key = drafted_key(section_id, current.version)
        await ctx.durable.publish(
            ctx.event(EventType.SECTION_DRAFTED, drafted), idempotency_key=key
        )


def _section_of(draft: Draft | None, section_id: str) -> SectionPlan:
    """The section's plan, as stored with its draft (a revision always has a draft)."""
    if draft is None:
        msg = f"revision requested for section {section_id!r}, which has no draft to revise"
        raise LookupError(msg)
    return draft.section


def write_request(
    topic: str,
    section: dict[str, Any],
    facts: list[Fact],
    *,
    previous: Document | None,
    comments: list[Quoted],
) -> dict[str, Any]:
    """The input of the "write" task: every fact, previous draft and comment quoted."""
    return {
        "topic": topic,
        "section": section,
        "facts": quoted_facts(facts),
        "previous": None
        if previous is None
        else {
            "markdown": quote(
                Draft.model_validate(previous.value).to_markdown(), written_by=previous.agent_id
            ),
            "version": previous.version,
        },
        "comments": comments,
    }


def write_bounds(section: SectionPlan, fact_ids: list[int]) -> Bounds:
    """The draft's schema for one section: its title, its facts' ids, a few paragraphs."""
    enums: dict[str, list[str | int]] = {"title": [section.title]}
    citations = PARAGRAPH_CITATIONS
    if fact_ids:
        enums["paragraphs.citations"] = list(fact_ids)
    else:
        citations = 0
    return Bounds(
        enums=enums,
        max_items={
            "paragraphs": max(1, min(MAX_PARAGRAPHS, len(fact_ids))),
            "paragraphs.citations": citations,
        },
        min_items={"paragraphs.citations": 1 if fact_ids else 0},  # every paragraph cites
        max_length={"paragraphs.text": 600},
    )


async def _write(
    ctx: Context,
    request: dict[str, Any],
    *,
    section: SectionPlan,
    facts: list[Fact],
    round_: int,
    expected: int = 0,
    past_limit: bool = False,
) -> Draft:
    """Ask the LLM for the section; returns the draft document's value.

    The section is written from its facts instead (:func:`facts_draft`, marked ``extractive``
    with the reason) when review asked for a round past the limit (every draft the model
    wrote failed the support check), or when the LLM gives no usable draft within its
    attempts (a weak model can fail every one), so the run still ends with a true section.
    """
    known = {fact.id for fact in facts}
    extractive: str | None = None
    if past_limit:
        rounds = f"{round_} round{'s' * (round_ != 1)}"
        extractive = f"its drafts still failed the support check after {rounds}"
        logger.warning("%s: %s; writing it from its facts", section.section_id, extractive)
        draft = facts_draft(section, facts)
    else:
        try:
            draft = await ctx.llm.generate(
                task="write",
                instructions=load_prompt("writer"),
                payload=request,
                output=SectionDraft,
                bounds=write_bounds(section, sorted(known)),
            )
        except LLMNoAnswerError as exc:
            logger.warning("no usable draft of %s from the LLM (%s); using its facts", section, exc)
            extractive = "the model gave no usable draft"
            draft = facts_draft(section, facts)
    unknown = [c for c in draft.citations if c not in known]
    if unknown:
        logger.warning("draft of %s cites unknown facts %s", section.section_id, unknown)
    return Draft(
        title=draft.title,
        paragraphs=draft.paragraphs,
        section=section,
        round=round_,
        facts=expected,
        extractive=extractive,
    )


def facts_draft(section: SectionPlan, facts: list[Fact]) -> SectionDraft:
    """The section as its facts, verbatim, as the stub writes it: in source order, neighbours
    that share a subject word in one paragraph citing them (a repeated fact once), or a note
    that it has none."""
    unique = list({f.fact: f for f in sorted(facts, key=lambda f: f.id)}.values())
    paragraphs: list[Paragraph] = []
    if unique:
        payload = {
            "section": {"title": section.title},
            "facts": [{"id": f.id, "fact": f.fact} for f in unique[:MAX_FALLBACK]],
            "previous": "",  # all of them, not a first draft's share
        }
        paragraphs = list(stub_llm.write(payload).paragraphs)
    if not paragraphs:
        note = f"The sources gave no usable fact about {section.title}."
        paragraphs = [Paragraph(text=note, citations=[])]
    return SectionDraft(title=section.title, paragraphs=paragraphs)
