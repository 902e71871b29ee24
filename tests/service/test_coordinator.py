"""The coordinator keeps each run's fold between tickets, and a run ends with one outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentmem.agents.documents import Draft, draft_key
from agentmem.agents.llm_output import Paragraph
from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.memory import Memory, RunEntry, open_memory
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.tracker import RunState, RunTracker
from agentmem.protocol.events import (
    EventType,
    RunPlanned,
    RunRequested,
    SectionApproved,
    SectionPlan,
    SourceDoc,
    new_event,
)
from agentmem.service.coordinator import (
    RunFold,
    coordinate,
    end_run,
    run_events,
    time_out,
)
from agentmem.service.routes import PoolRole

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SECTIONS = [SectionPlan(section_id=f"s{n}", title=f"Section {n}") for n in range(3)]


@pytest.fixture
def settings(servers: ServerUrls, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        reports_dir=str(tmp_path / "reports"),
        data_dir=str(tmp_path / "data"),
        run_timeout_seconds=60,
    )


@pytest.fixture
async def run(settings: Settings, namespace: str) -> AsyncIterator[Memory]:
    """A run's scope whose index entry started an hour ago (past its timeout), planned."""
    config = settings.memory_config(client_name="agentmem:test")
    async with open_memory(config, "service") as root:
        scope = root.scope(f"{namespace}-run")
        started = datetime.now(UTC) - timedelta(hours=1)
        await scope.runs.put(RunEntry(run_id=scope.namespace, topic="t", started_at=started))
        request = RunRequested(topic="t", sources=[SourceDoc(name="a.md", text="a")])
        planned = RunPlanned(topic="t", sections=SECTIONS, fact_count=0)
        await _publish(scope, settings, EventType.RUN_REQUESTED, request)
        await _publish(scope, settings, EventType.RUN_PLANNED, planned)
        yield scope


async def _publish(scope: Memory, settings: Settings, kind: EventType, payload: object) -> None:
    events = run_events(scope, settings)
    await events.publish(new_event(kind, "test", payload))  # type: ignore[arg-type]


async def _approve(scope: Memory, settings: Settings, section: SectionPlan) -> None:
    """A section written (version 1) and approved."""
    draft = Draft(section=section, round=0, title=section.title, paragraphs=[Paragraph(text="x")])
    await scope.db.write(draft_key(section.section_id), draft.model_dump(mode="json"), "writer")
    approved = SectionApproved(section_id=section.section_id, version=1, round=0)
    await _publish(scope, settings, EventType.SECTION_APPROVED, approved)


def _queues(scope: Memory) -> dict[str, WorkQueue]:
    return {role.value: WorkQueue(scope.client, role.value) for role in PoolRole}


async def _ends(scope: Memory, settings: Settings) -> list[str]:
    log = await run_events(scope, settings).read_events(count=1000)
    ends = {EventType.RUN_COMPLETED, EventType.RUN_FAILED}
    return [e.event_type for e in log if e.event_type in ends]


async def _replayed(scope: Memory, settings: Settings) -> RunState:
    return await run_events(scope, settings).replay(RunTracker())


async def test_the_coordinator_reads_each_event_of_a_run_once_across_its_tickets(
    run: Memory, settings: Settings
) -> None:
    """A ticket per settled section: the kept fold reads only the events after the last it
    applied (each event once in all, not the whole log per ticket), and ends in the same state
    as a fold of the whole log, as does a coordinator that joins at the last ticket."""
    queues, fold = _queues(run), RunFold()
    assert await coordinate(run, settings, queues, "coordinator-a", fold) == "running"
    for section in SECTIONS:
        await _approve(run, settings, section)
        await coordinate(run, settings, queues, "coordinator-a", fold)
    log_length = len(await run_events(run, settings).read_events(count=1000))

    assert fold.state.report_path is None  # run.completed was published after this fold
    assert fold.read == log_length - 1  # every event but run.completed, each once
    replayed = await _replayed(run, settings)
    assert {i: s.state for i, s in fold.state.sections.items()} == {
        i: s.state for i, s in replayed.sections.items()
    }
    late = RunFold()  # another coordinator, with no state for the run: folds it whole
    assert await coordinate(run, settings, queues, "coordinator-b", late) == "completed"
    assert late.read == log_length
    assert await _ends(run, settings) == [EventType.RUN_COMPLETED]


async def test_a_run_completed_after_the_sweep_saw_it_running_does_not_also_time_out(
    run: Memory, settings: Settings
) -> None:
    """The sweep reads the run's entry (running, past its timeout); the coordinator completes
    the run; the sweep's timeout then acts on what it read: the run keeps one outcome,
    completed, and one end event."""
    seen_by_sweep = await run.runs.get(run.namespace)
    assert seen_by_sweep is not None
    assert seen_by_sweep.state == "running"
    for section in SECTIONS:
        await _approve(run, settings, section)
    assert await coordinate(run, settings, _queues(run), "coordinator") == "completed"

    await time_out(run, settings, _queues(run), "coordinator", seen_by_sweep)

    entry = await run.runs.get(run.namespace)
    assert entry is not None
    assert entry.state == "completed"
    assert entry.error is None
    assert await _ends(run, settings) == [EventType.RUN_COMPLETED]


async def test_a_run_that_timed_out_while_its_report_was_written_keeps_one_outcome(
    run: Memory, settings: Settings
) -> None:
    """The coordinator read the entry (running) and wrote the report; the sweep times the run
    out; the coordinator's completion then finds the run ended: failed stays, one end event."""
    seen_by_coordinator = await run.runs.get(run.namespace)
    assert seen_by_coordinator is not None
    await time_out(run, settings, _queues(run), "sweeper", seen_by_coordinator)
    completed = seen_by_coordinator.model_copy(
        update={"state": "completed", "report_path": "r.md", "ended_at": datetime.now(UTC)}
    )

    outcome = await end_run(run, settings, _queues(run), "coordinator", completed)

    assert outcome == "failed"
    entry = await run.runs.get(run.namespace)
    assert entry is not None
    assert entry.state == "failed"
    assert await _ends(run, settings) == [EventType.RUN_FAILED]
