"""The coordinator's cost per run: its fold kept between tickets against a fold of the whole
log on each ticket (what the coordinator did before it kept one).

A synthetic run of ``AGENTMEM_BENCH_FOLD_SECTIONS`` sections (default 50), each with
``AGENTMEM_BENCH_FOLD_CALLS`` ``llm.called`` events (default 40) and one ``section.approved``
(a coordinator ticket): :func:`~service.coordinator.coordinate` once per approval, with one
kept :class:`~service.coordinator.RunFold`, then with a new one each time. Reports the seconds
spent in ``coordinate`` and the events read, for each; the last call writes the report in
both.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from pydantic import SecretStr

from agentmem.agents.documents import Draft, draft_key
from agentmem.agents.llm_output import Paragraph
from agentmem.agents.settings import Settings
from agentmem.bench.harness import Figures
from agentmem.memory import Memory, RunEntry, open_memory
from agentmem.memory.work_queue import WorkQueue
from agentmem.protocol.events import (
    EventType,
    LLMCalled,
    RunPlanned,
    RunRequested,
    SectionApproved,
    SectionPlan,
    SourceDoc,
    new_event,
)
from agentmem.service.coordinator import RunFold, coordinate, run_events
from agentmem.service.routes import PoolRole


async def fold_cost(env: dict[str, str], tag: str) -> Figures:
    """Seconds in ``coordinate`` and events read over one run, kept fold against whole log."""
    sections = int(os.environ.get("AGENTMEM_BENCH_FOLD_SECTIONS", "50"))
    calls = int(os.environ.get("AGENTMEM_BENCH_FOLD_CALLS", "40"))
    settings = Settings(
        redis_url=SecretStr(env["REDIS_URL"]),
        database_url=SecretStr(env["DATABASE_URL"]),
        reports_dir=env["AGENTMEM_REPORTS_DIR"],
        llm="stub",
    )
    figures: Figures = {"sections": sections, "llm_called_per_section": calls}
    async with open_memory(settings.memory_config(client_name="agentmem:bench"), "service") as root:
        for kept in (False, True):
            name = "kept" if kept else "whole_log"
            scope = root.scope(f"{tag}-fold-{name}")
            seconds, read = await _one_run(settings, scope, sections, calls, kept=kept)
            figures[f"{name}_seconds"] = seconds
            figures[f"{name}_events_read"] = read
    return figures


async def _one_run(
    settings: Settings, scope: Memory, sections: int, calls: int, *, kept: bool
) -> tuple[float, int]:
    started = datetime.now(UTC)
    await scope.runs.put(RunEntry(run_id=scope.namespace, topic="t", started_at=started))
    events = run_events(scope, settings)
    queues = {role.value: WorkQueue(scope.client, role.value) for role in PoolRole}
    plans = [SectionPlan(section_id=f"s{n}", title=f"Section {n}") for n in range(sections)]
    request = RunRequested(topic="t", sources=[SourceDoc(name="a.md", text="a")])
    await events.publish(new_event(EventType.RUN_REQUESTED, "bench", request))
    planned = RunPlanned(topic="t", sections=plans, fact_count=0)
    await events.publish(new_event(EventType.RUN_PLANNED, "bench", planned))
    fold, seconds, read = RunFold(), 0.0, 0
    for plan in plans:
        called = LLMCalled(task="write", model="stub", seconds=0.3, ok=True)
        await events.publish_many(
            [new_event(EventType.LLM_CALLED, "writer-1", called) for _ in range(calls)]
        )
        draft = Draft(section=plan, round=0, title=plan.title, paragraphs=[Paragraph(text="x")])
        await scope.db.write(draft_key(plan.section_id), draft.model_dump(mode="json"), "writer")
        approved = SectionApproved(section_id=plan.section_id, version=1, round=0)
        await events.publish(new_event(EventType.SECTION_APPROVED, "reviewer-1", approved))
        this = fold if kept else RunFold()
        clock = time.perf_counter()
        await coordinate(scope, settings, queues, "bench", this)
        seconds += time.perf_counter() - clock
        read += 0 if kept else this.read
    return seconds, fold.read if kept else read
