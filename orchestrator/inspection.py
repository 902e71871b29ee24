"""``agentmem inspect``: what a finished run left in the stores, rebuilt from its log."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from agents.documents import Draft, draft_key
from agents.protocol import RUN_STREAM
from agents.settings import Settings
from memory import open_memory
from orchestrator.tracker import RunTracker


async def show_run(
    settings: Settings,
    run_id: str,
    console: Console,
    *,
    facts: bool,
    events: bool,
    section: str | None,
) -> bool:
    """Print the run's sections, and its facts, events or a section's versions; False if the
    run has no events in these stores."""
    async with open_memory(settings.memory_config(), run_id) as m:
        memory, log, db = m.memory, m.events(RUN_STREAM), m.db.replica()  # a viewer: may lag
        state = await log.replay(RunTracker())
        if not state.events:
            return False
        table = Table(title=f"{run_id}: {state.topic}")
        for column in ("section", "state", "version", "revisions"):
            table.add_column(column)
        for s in state.sections.values():
            table.add_row(s.plan.section_id, s.state, str(s.version), str(s.revisions))
        console.print(table)
        llm = sum(state.llm_seconds.values())
        console.print(
            f"{state.events} events, {state.fact_count} facts, {llm:.2f} s waiting for the LLM, "
            f"report: {state.report_path}"
        )
        if facts:
            for category in await memory.list_categories():
                for fact in await memory.get_facts_by_category(category):
                    source = fact.metadata.get("source")
                    console.print(f"[F{fact.id}] ({category}, {source}) {fact.fact}", markup=False)
        if events:
            for event in await log.read_events(count=10_000):
                console.print(
                    f"{event.event_id} {event.timestamp:%H:%M:%S.%f} {event.agent_id:<12} "
                    f"{event.event_type} {event.payload}",
                    markup=False,
                )
        if section is not None:
            for doc in await db.history(draft_key(section)):
                console.rule(
                    f"{section} version {doc.version} by {doc.agent_id} at "
                    f"{doc.created_at:%H:%M:%S} (fencing token {doc.fencing_token})"
                )
                console.print(Draft.model_validate(doc.value).to_markdown(), markup=False)
        return True
