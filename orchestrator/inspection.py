"""``agentmem inspect`` and ``agentmem dead-letters``: what a run left in the stores.

The sections' states are rebuilt from the run's log, and so is the list of its LLM calls
(agent, task, model, attempts, tokens, latency, outcome: its ``llm.called`` events); why a
run failed comes from its failure events and its entry in the run index; each section's
groundedness (:mod:`agents.groundedness`) and the repairs of the model's plan come from the
draft store; a section's
versions come with the review of each and a diff from the version before. Payloads are
shortened unless ``full`` is asked for.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentmem.agents import Settings, groundedness
from agentmem.agents.documents import PLAN_KEY, Draft, PlanDoc, ReviewRecord, draft_key, review_key
from agentmem.agents.llm_output import citation
from agentmem.memory import DeadLetter, Memory, RunEntry, open_memory
from agentmem.orchestrator.tracker import RunState, RunTracker
from agentmem.protocol import RUN_STREAM

PAYLOAD_CHARS = 160


def brief(value: Any, limit: int = PAYLOAD_CHARS, *, full: bool = False) -> str:
    """``value`` as compact JSON, cut to ``limit`` characters (with what was left out)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if full or len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters; --full shows them)"


async def run_exists(m: Memory) -> bool:
    """Whether the run has an entry in the index or any event in these stores."""
    return await m.runs.get(m.namespace) is not None or bool(
        await m.events(RUN_STREAM).read_events(count=1)
    )


async def run_json(
    settings: Settings, run_id: str, *, facts: bool, events: bool, section: str | None
) -> dict[str, Any] | None:
    """What ``inspect --json`` prints: the run as one JSON-ready object; None if unknown."""
    async with open_memory(settings.memory_config(), run_id) as m:
        log = m.events(RUN_STREAM)
        state = await log.replay(RunTracker())
        entry = await m.runs.get(run_id)
        if not state.events and entry is None:
            return None
        failures = list(state.failures)
        if entry is not None and entry.error and entry.error not in " ".join(failures):
            failures.append(entry.error)
        found: dict[str, Any] = {
            "run_id": run_id,
            "topic": state.topic or (entry.topic if entry else ""),
            "state": entry.state if entry else "unknown",
            "started_at": entry.started_at.isoformat() if entry else None,
            "ended_at": entry.ended_at.isoformat() if entry and entry.ended_at else None,
            "report_path": state.report_path or (entry.report_path if entry else None),
            "events": state.events,
            "facts": state.fact_count,
            "sections": [
                {
                    "section_id": p.plan.section_id,
                    "title": p.plan.title,
                    "state": str(p.state),
                    "version": p.version,
                    "revisions": p.revisions,
                    "agent": p.agent,
                }
                for p in state.sections.values()
            ],
            "failures": failures,
            "malformed_events": state.malformed,
            "llm_calls": [asdict(call) for call in state.llm_calls],
            "llm_totals": asdict(state.llm_totals),
        }
        if facts:
            found["fact_list"] = [
                {"id": f.id, "category": c, "fact": f.fact, "metadata": f.metadata}
                for c in await m.memory.list_categories()
                for f in await m.memory.get_facts_by_category(c)
            ]
        if events:
            found["event_list"] = [
                {
                    "event_id": e.event_id,
                    "timestamp": e.timestamp.isoformat(),
                    "agent_id": e.agent_id,
                    "event_type": e.event_type,
                    "payload": e.payload,
                }
                for e in await log.read_events(count=10_000)
            ]
        if section is not None:
            history = await m.db.replica().history(draft_key(section))
            reviews = await m.db.replica().read_many(
                [review_key(section, d.version) for d in history]
            )
            found["versions"] = [
                {
                    "version": doc.version,
                    "agent_id": doc.agent_id,
                    "created_at": doc.created_at.isoformat(),
                    "fencing_token": doc.fencing_token,
                    "draft": doc.value,
                    "review": (
                        r.value if (r := reviews.get(review_key(section, doc.version))) else None
                    ),
                }
                for doc in history
            ]
        return found


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as ``dead-letters --json`` prints it (one JSON object per line)."""
    return {**asdict(letter), "failed_at": letter.failed_at.isoformat()}


async def show_run(
    settings: Settings,
    run_id: str,
    console: Console,
    *,
    facts: bool,
    events: bool,
    section: str | None,
    full: bool = False,
) -> bool:
    """Print the run's state, and on request its facts, events or a section's versions;
    False if these stores know nothing of the run."""
    async with open_memory(settings.memory_config(), run_id) as m:
        log = m.events(RUN_STREAM)
        state = await log.replay(RunTracker())
        entry = await m.runs.get(run_id)
        if not state.events and entry is None:
            return False
        plan, figures = await _grounding(m, state)
        _summary(console, run_id, state, entry, figures)
        if plan is not None and plan.repairs:
            console.print("[yellow]the model's plan was repaired:[/]")
            for repair in plan.repairs:
                console.print(Text(f"  {repair}"))
        if facts:
            for category in await m.memory.list_categories():
                for fact in await m.memory.get_facts_by_category(category):
                    source = fact.metadata.get("source")
                    line = f"{citation(fact.id)} ({category}, {source}) {fact.fact}"
                    console.print(line, markup=False)
        if events:
            for event in await log.read_events(count=10_000):
                console.print(
                    f"{event.event_id} {event.timestamp:%H:%M:%S.%f} {event.agent_id:<12} "
                    f"{event.event_type} {brief(event.payload, full=full)}",
                    markup=False,
                    highlight=False,
                )
        if section is not None:
            await _versions(console, m, section)
        return True


async def _grounding(
    m: Memory, state: RunState
) -> tuple[PlanDoc | None, dict[str, groundedness.SectionFigure]]:
    """The run's plan, and the groundedness of each section's latest draft."""
    docs = await m.db.read_many([PLAN_KEY, *(draft_key(s) for s in state.sections)])
    plan = docs.get(PLAN_KEY)
    drafts = {
        s: Draft.model_validate(doc.value)
        for s in state.sections
        if (doc := docs.get(draft_key(s))) is not None
    }
    facts = [f for s in drafts for f in await m.memory.get_facts_by_category(s)]
    figures = {f.section_id: f for f in groundedness.section_figures(drafts, facts)}
    return (PlanDoc.model_validate(plan.value) if plan is not None else None), figures


def _sections(
    console: Console, title: str, state: RunState, figures: dict[str, groundedness.SectionFigure]
) -> None:
    """The sections' table (with each one's supported / counted sentences) and the total."""
    table = Table(title=title, expand=False)
    for column in ("section", "state", "version", "revisions", "supported"):
        table.add_column(column)
    for s in state.sections.values():
        figure = figures.get(s.plan.section_id)
        cell = ""
        if figure is not None:
            cell = f"{figure.supported}/{figure.total}" + (
                " extractive" if figure.extractive else ""
            )
        table.add_row(s.plan.section_id, s.state, str(s.version), str(s.revisions), cell)
    console.print(table)
    if figures:
        supported = sum(f.supported for f in figures.values())
        total = sum(f.total for f in figures.values())
        console.print(
            f"groundedness: {groundedness.phrase(supported, total)} supported by the facts "
            "they cite",
            highlight=False,
        )


def _summary(
    console: Console,
    run_id: str,
    state: RunState,
    entry: RunEntry | None,
    figures: dict[str, groundedness.SectionFigure],
) -> None:
    topic = state.topic or (entry.topic if entry else "")
    if state.sections:
        _sections(console, f"{run_id}: {topic}", state, figures)
    else:
        console.print(f"[bold]{run_id}[/]: {topic}", highlight=False)
        console.print("no sections were planned", style="yellow")
    llm = sum(state.llm_seconds.values())
    console.print(
        f"{state.events} events, {state.fact_count} facts, {llm:.2f} s waiting for the LLM",
        highlight=False,
    )
    _llm_calls(console, state)
    if state.malformed:
        console.print(
            f"[yellow]{len(state.malformed)} malformed event(s), skipped (their payload does not "
            "fit their type):[/]"
        )
        for line in state.malformed:
            console.print(Text(f"  {line}"))
    failures = list(state.failures)
    if entry is not None and entry.error and entry.error not in " ".join(failures):
        failures.append(entry.error)
    if failures:
        console.print("[bold red]why the run failed:[/]")
        for failure in failures:
            console.print(Text(f"  {failure}"))
    if state.report_path:
        console.print(f"report: {state.report_path}", soft_wrap=True, highlight=False)
    elif entry is not None and entry.state == "running":
        console.print("report: not written yet (the run has not finished)")
    else:
        console.print("report: not written (the run did not finish)")


def _llm_calls(console: Console, state: RunState) -> None:
    """Every LLM call of the run, and their totals."""
    if not state.llm_calls:
        console.print("no LLM calls were recorded")
        return
    table = Table(title="LLM calls", expand=False, title_justify="left")
    columns = ("agent", "task", "model", "attempts", "prompt", "completion", "seconds", "queued")
    for column in columns:
        table.add_column(column, justify="right" if column in columns[3:] else "left")
    table.add_column("outcome")
    for call in state.llm_calls:
        table.add_row(
            call.agent,
            call.task,
            call.model,
            str(call.attempts),
            _tokens(call.prompt_tokens),
            _tokens(call.completion_tokens),
            f"{call.seconds:.2f}",
            f"{call.queued_seconds:.2f}",
            Text(call.outcome, style="" if call.outcome == "ok" else "red"),
        )
    console.print(table)
    totals = state.llm_totals
    console.print(
        f"{totals.calls} LLM calls ({totals.failed} failed, {totals.retries} retries), "
        f"{totals.prompt_tokens:,} prompt + {totals.completion_tokens:,} completion tokens, "
        f"{totals.seconds:.1f} s",
        highlight=False,
    )


def _tokens(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


async def _versions(console: Console, m: Memory, section: str) -> None:
    """Every version of the section, the review of each, and what changed between them."""
    history = await m.db.replica().history(draft_key(section))  # a viewer: may lag
    if not history:
        console.print(f"section {section!r} has no drafts in this run", style="yellow")
        return
    reviews = await m.db.replica().read_many([review_key(section, d.version) for d in history])
    previous: list[str] | None = None
    for doc in history:
        console.rule(
            f"{section} version {doc.version} by {doc.agent_id} at "
            f"{doc.created_at:%H:%M:%S} (fencing token {doc.fencing_token})"
        )
        lines = Draft.model_validate(doc.value).to_markdown().splitlines()
        if previous is None:
            console.print("\n".join(lines), markup=False)
        else:
            diff = difflib.unified_diff(
                previous, lines, f"version {doc.version - 1}", f"version {doc.version}", lineterm=""
            )
            for line in diff:
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
                console.print(Text(line, style=style))
        previous = lines
        record = reviews.get(review_key(section, doc.version))
        if record is None:
            console.print("review: none yet", style="dim")
            continue
        review = ReviewRecord.model_validate(record.value)
        verdict = "approved" if review.approved else "revision requested"
        console.print(f"review by {record.agent_id}: [bold]{verdict}[/]", highlight=False)
        for comment in review.comments:
            console.print(Text(f"  - {comment}"))


async def dead_letters(settings: Settings, run_id: str) -> list[DeadLetter] | None:
    """The run's dead letters; None if these stores know nothing of the run."""
    async with open_memory(settings.memory_config(), run_id) as m:
        if not await run_exists(m):
            return None
        return await m.events(RUN_STREAM).dead_letters(count=1000)


def show_dead_letters(console: Console, letters: list[DeadLetter], *, full: bool) -> None:
    """One block per dead letter: its id, when, which role gave up and why, what it carried."""
    if not letters:
        console.print("no dead letters: every handoff of this run was handled")
        return
    for letter in letters:
        console.print(
            Text.assemble(
                (letter.dead_letter_id, "bold"),
                f" {letter.failed_at:%Y-%m-%d %H:%M:%S} the {letter.group} agents gave up on "
                f"entry {letter.entry_id}: {brief(letter.reason, 300, full=full)}",
            )
        )
        console.print(Text(f"  carried: {brief(letter.fields, full=full)}"))
