"""What the web view shows of a run, read from the memory layer in a few round trips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anyio

from agentmem.agents.documents import Draft, ReviewRecord, draft_key, review_key
from agentmem.memory import AgentEvent, DeadLetter, Document, Fact, Memory, RunEntry, path_part
from agentmem.orchestrator import RunState, RunTracker
from agentmem.orchestrator.report import read_log
from agentmem.protocol import RUN_STREAM


@dataclass
class Version:
    """One draft version of a section and the review it got (None while in review)."""

    document: Document
    draft: Draft
    review: ReviewRecord | None


@dataclass
class RunView:
    run_id: str
    entry: RunEntry | None
    state: RunState
    events: list[AgentEvent]
    versions: dict[str, list[Version]] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    report: str | None = None  # the report's markdown, when its file is on this host

    @property
    def known(self) -> bool:
        return self.entry is not None or bool(self.events)

    @property
    def last_event_id(self) -> str:
        return next((e.event_id for e in reversed(self.events) if e.event_id), "0-0")


async def load_run(m: Memory, run_id: str) -> RunView:
    """The run's entry, events (and the state they fold into), drafts, reviews, facts and
    dead letters."""
    log = m.events(RUN_STREAM)
    events = await read_log(log)
    tracker = RunTracker()
    state = tracker.initial()
    for event in events:
        tracker.apply(state, event)
    view = RunView(run_id, await m.runs.get(run_id), state, events)
    if not view.known:
        return view
    histories: dict[str, list[Document]] = {}
    db = m.db.replica()  # a page may lag a write by milliseconds; the replica serves it

    async def history(section_id: str) -> None:
        histories[section_id] = await db.history(draft_key(section_id))

    async with anyio.create_task_group() as tg:
        for section_id in state.sections:
            tg.start_soon(history, section_id)
    reviews = await db.read_many(
        [review_key(s, d.version) for s, docs in histories.items() for d in docs]
    )
    for section_id in state.sections:
        view.versions[section_id] = [
            Version(
                doc,
                Draft.model_validate(doc.value),
                _review(reviews.get(review_key(section_id, doc.version))),
            )
            for doc in histories[section_id]
        ]
    for category in await m.memory.list_categories():
        view.facts += await m.memory.get_facts_by_category(category)
    view.dead_letters = await log.dead_letters(1000)
    view.report = await anyio.to_thread.run_sync(read_report, run_id, state.report_path)
    return view


def read_report(run_id: str, report_path: str | None) -> str | None:
    """The run's report, when the path its log names is readable here and is the file a run
    writes (``<run id>.md``): a path read from the stores never opens any other file."""
    if report_path is None:
        return None
    path = Path(report_path)
    if path.name != f"{path_part(run_id)}.md":
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _review(document: Document | None) -> ReviewRecord | None:
    return None if document is None else ReviewRecord.model_validate(document.value)
