"""The review agent: approves a draft version or sends it back with comments.

On ``section.drafted`` it reads that version of the draft and the section's facts and checks
it itself, whatever a model says: every cited id must be a fact of the section's category,
every paragraph must cite one, and every sentence must be supported by the facts it cites
(:mod:`agents.support`: not uncited, looping, repeated or unsupported). Only a draft that
passes goes to the review model, whose verdict (and the sentences it judges unsupported)
comes on top; a draft that fails goes back with comments naming each failing sentence, without
an LLM call. Then it approves the section, accepts it at the round limit, or requests a
revision.

A draft still unsupported at the round limit is never settled: the reviewer asks for one more
round, past the limit, in which the writer writes the section from its facts (extractively,
as the stub does); that draft is checked, not sent to the model, and approved. A section's
settled version is therefore approved with every sentence supported, written from its facts,
or (when a model only disagrees on taste) accepted at the round limit with every sentence
supported.

The review of a version is stored once (``review/<id>/<version>``, ``expected_version=0``)
before its decision is published, so a redelivered handoff republishes the same decision
instead of asking the LLM again.
"""

from __future__ import annotations

import logging
from typing import Any

from agentmem.agents.documents import PLAN_KEY, Draft, PlanDoc, ReviewRecord, draft_key, review_key
from agentmem.agents.idempotency import decision_key
from agentmem.agents.llm_base import LLMNoAnswerError
from agentmem.agents.llm_output import Review, SectionDraft
from agentmem.agents.prompts import load_prompt
from agentmem.agents.runtime import Context
from agentmem.agents.schemas import Bounds
from agentmem.agents.support import check, verbatim_flags
from agentmem.agents.untrusted import quote, quoted_facts, quoted_section
from agentmem.memory import AgentEvent, ConflictError, Document, Fact
from agentmem.protocol.events import (
    EventType,
    SectionApproved,
    SectionDrafted,
    SectionRevisionRequested,
    payload_as,
)

logger = logging.getLogger(__name__)

FALLBACK_NOTE = "Still unsupported at the round limit: the section will be written from its facts."


async def handle(ctx: Context, event: AgentEvent) -> None:
    """Review one draft version (once) and publish the decision."""
    drafted = payload_as(event, SectionDrafted)
    key = review_key(drafted.section_id, drafted.version)
    docs = await ctx.db.read_many([key, PLAN_KEY])
    record = docs.get(key)
    if record is None:
        plan = docs.get(PLAN_KEY)
        topic = PlanDoc.model_validate(plan.value).topic if plan is not None else ""
        planned_by = plan.agent_id if plan is not None else event.agent_id
        record = await _review(ctx, topic, planned_by, drafted)
    else:
        logger.info("%s was reviewed already; publishing its decision again", key)
    key = decision_key(drafted.section_id, drafted.version)
    await ctx.durable.publish(
        _decision(ctx, ReviewRecord.model_validate(record.value)), idempotency_key=key
    )


async def _review(ctx: Context, topic: str, planned_by: str, drafted: SectionDrafted) -> Document:
    """Review the draft version and store the review; returns the stored record."""
    section_id = drafted.section_id
    doc = await ctx.db.read(draft_key(section_id), version=drafted.version)
    if doc is None:
        msg = f"draft {draft_key(section_id)} version {drafted.version} does not exist"
        raise LookupError(msg)
    draft = Draft.model_validate(doc.value)
    facts = await ctx.facts_of(section_id, draft.facts)
    await ctx.status(f"reviewing section {section_id} version {drafted.version}")
    support = check(draft, facts)
    problems = [*citation_problems(draft, facts), *support.problems()]
    if draft.extractive is not None:  # its facts, verbatim: the checks decide, not the model
        review = Review(approved=True)
    elif problems:  # it goes back whatever the model says: the model is not asked
        review = Review(approved=False)
    else:
        review = await _model_review(
            ctx,
            topic=topic,
            planned_by=planned_by,
            drafted=drafted,
            draft=draft,
            facts=facts,
            written_by=doc.agent_id,
        )
        if review.unsupported:  # the model's judgment on top of the check
            support = support.judged(review.unsupported, verbatim_flags(draft, facts))
            problems = support.problems()
    approved = review.approved and not problems
    if approved:
        decision = EventType.SECTION_APPROVED
    elif drafted.round + 1 < ctx.settings.review_rounds:
        decision = EventType.SECTION_REVISION_REQUESTED
    elif problems and draft.extractive is None:
        # Still unsupported at the round limit: never settle it; the writer's next round,
        # past the limit, writes the section from its facts (see agents.writer).
        decision = EventType.SECTION_REVISION_REQUESTED
        problems.append(FALLBACK_NOTE)
    else:
        decision = EventType.SECTION_ROUND_LIMIT
    value = ReviewRecord(
        section_id=section_id,
        version=drafted.version,
        round=drafted.round,
        approved=approved,
        comments=[*problems, *review.comments],
        decision=decision,
        support=support,
    )
    key = review_key(section_id, drafted.version)
    try:
        record = await ctx.db.write(
            key, value.model_dump(mode="json"), ctx.agent_id, expected_version=0
        )
    except ConflictError:  # another reviewer stored its review of this version first
        stored = await ctx.db.read(key)
        assert stored is not None
        return stored
    logger.info("%s version %d: %s", section_id, drafted.version, decision.value)
    return record


async def _model_review(
    ctx: Context,
    *,
    topic: str,
    planned_by: str,
    drafted: SectionDrafted,
    draft: Draft,
    facts: list[Fact],
    written_by: str,
) -> Review:
    """The review model's verdict on a draft the checks passed (approval when it gives none)."""
    request = review_request(
        topic,
        quoted_section(draft.section, written_by=planned_by),
        facts,
        draft=draft,
        written_by=written_by,
        round_=drafted.round,
    )
    try:
        return await ctx.llm.generate(
            task="review",
            instructions=load_prompt("review"),
            payload=request,
            output=Review,
            bounds=review_bounds(len(request["sentences"])),
        )
    except LLMNoAnswerError as exc:  # a weak model failed every attempt: the checks decide
        section_id = drafted.section_id
        logger.warning("no usable review of %s from the LLM (%s); checks only", section_id, exc)
        note = "The review model gave no usable answer; only the checks applied."
        return Review(approved=True, comments=[note])


def review_bounds(sentence_count: int) -> Bounds:
    """The review's schema: a few short comments, and sentence numbers of this draft."""
    return Bounds(
        enums={"unsupported": list(range(1, sentence_count + 1))} if sentence_count else {},
        max_items={"comments": 4, "unsupported": sentence_count},
        max_length={"comments": 240},  # short: a small model would otherwise go on and on
    )


def review_request(
    topic: str,
    section: dict[str, Any],
    facts: list[Fact],
    *,
    draft: SectionDraft,
    written_by: str,
    round_: int,
) -> dict[str, Any]:
    """The input of the "review" task: the facts and the draft ``written_by`` wrote, quoted."""
    return {
        "topic": topic,
        "section": section,
        "facts": quoted_facts(facts),
        "draft": {
            "title": quote(draft.title, written_by=written_by),
            "paragraphs": [
                {"text": quote(p.text, written_by=written_by), "citations": p.citations}
                for p in draft.paragraphs
            ],
        },
        "sentences": [  # numbered as the check counts them, for the model's "unsupported"
            {"n": n, "paragraph": s.paragraph, "text": quote(s.text, written_by=written_by)}
            for n, s in enumerate(check(draft, facts).sentences, start=1)
        ],
        "round": round_,
    }


def citation_problems(draft: SectionDraft, facts: list[Fact]) -> list[str]:
    """What is wrong with the draft's citations, checked here rather than trusted to the LLM."""
    known = {fact.id for fact in facts}
    problems: list[str] = []
    unknown = sorted(set(draft.citations) - known)
    if unknown:
        cited = ", ".join(f"[F{c}]" for c in unknown)
        problems.append(f"Cites {cited}, which are not facts of this section; cite only those.")
    uncited = [i + 1 for i, p in enumerate(draft.paragraphs) if not p.citations]
    if uncited:
        problems.append(f"Paragraphs {uncited} cite no fact; every claim needs a citation.")
    if not draft.paragraphs:
        problems.append("The draft has no paragraphs.")
    return problems


def _decision(ctx: Context, record: ReviewRecord) -> AgentEvent:
    """The event that carries a stored review's decision."""
    section_id, version, comments = record.section_id, record.version, record.comments
    if record.decision == EventType.SECTION_REVISION_REQUESTED:
        payload: SectionApproved | SectionRevisionRequested = SectionRevisionRequested(
            section_id=section_id, version=version, round=record.round + 1, comments=comments
        )
    else:
        payload = SectionApproved(
            section_id=section_id, version=version, round=record.round, comments=comments
        )
    return ctx.event(record.decision, payload)
