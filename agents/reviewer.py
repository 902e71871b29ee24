"""The review agent: approves a draft version or sends it back with comments.

On ``section.drafted`` it reads that version of the draft and the section's facts, asks the
LLM for a review, and checks the citations itself: every cited id must be a fact of the
section's category and every paragraph must cite one, whatever the LLM says. Then it
approves the section, accepts it at the round limit, or requests a revision.

The review of a version is stored once (``review/<id>/<version>``, ``expected_version=0``)
before its decision is published, so a redelivered handoff republishes the same decision
instead of asking the LLM again.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.documents import PLAN_KEY, Draft, PlanDoc, ReviewRecord, draft_key, review_key
from agents.keys import decision_key
from agents.llm_base import LLMNoAnswerError
from agents.models import Review, SectionDraft
from agents.prompts import load_prompt
from agents.protocol import (
    EventType,
    SectionApproved,
    SectionDrafted,
    SectionRevisionRequested,
    payload_as,
)
from agents.runtime import Context
from agents.schemas import Bounds
from agents.untrusted import quote, quoted_facts
from memory import AgentEvent, ConflictError, Document, Fact

logger = logging.getLogger(__name__)

# The review's schema: a few short comments (a small model would otherwise go on and on).
REVIEW_BOUNDS = Bounds(max_items={"comments": 4}, max_length={"comments": 240})


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
    await ctx.writer.publish(
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
    try:
        review = await ctx.llm.generate(
            task="review",
            instructions=load_prompt("review"),
            payload=review_request(
                topic,
                draft.section.quoted(planned_by),
                facts,
                draft=draft,
                written_by=doc.agent_id,
                round_=drafted.round,
            ),
            output=Review,
            bounds=REVIEW_BOUNDS,
        )
    except LLMNoAnswerError as exc:  # a weak model failed every attempt: the checks below decide
        logger.warning("no usable review of %s from the LLM (%s); checks only", section_id, exc)
        note = "The review model gave no usable answer; only the citation checks applied."
        review = Review(approved=True, comments=[note])
    problems = citation_problems(draft, facts)
    approved = review.approved and not problems
    if approved:
        decision = EventType.SECTION_APPROVED
    elif drafted.round + 1 >= ctx.settings.review_rounds:
        decision = EventType.SECTION_ROUND_LIMIT
    else:
        decision = EventType.SECTION_REVISION_REQUESTED
    value = ReviewRecord(
        section_id=section_id,
        version=drafted.version,
        round=drafted.round,
        approved=approved,
        comments=[*problems, *review.comments],
        decision=decision,
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
