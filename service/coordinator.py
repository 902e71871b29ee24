"""What finishes a pooled run, and what starts one: the coordinator role's work.

The per-run orchestrator follows its run's log until every section is settled, then writes
the report and announces the end. In the pool, a coordinator worker does the same on each
ticket of the run's ``coordinator`` route (the run was planned, a section settled, an agent
failed): it folds the run's whole log into a :class:`~orchestrator.tracker.RunState` (the same
projection the orchestrator uses) and, once the run is settled or failed, writes the outputs,
publishes ``run.completed`` or ``run.failed`` (once, by key), closes the run's index entry and
releases the run's place among its tenant's runs in flight, starting the tenant's next waiting
runs. Every step is idempotent, so two coordinators that see the same last event both finish
the run with one effect (the same files, one end event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from agents.idempotency import orchestrator_key
from agents.protocol import (
    RUN_STREAM,
    EventType,
    RunCompleted,
    RunFailed,
    RunRequested,
    new_event,
)
from agents.settings import Settings
from memory import EventStore, Memory, RunEntry
from memory.admission import Admission, Submissions
from memory.work_queue import WorkQueue
from orchestrator.lifecycle import ORCHESTRATOR, write_outputs
from orchestrator.report import read_log
from orchestrator.tracker import RunState, RunTracker
from service.routes import POOL_ROUTES, ticket

logger = logging.getLogger(__name__)


def run_events(scope: Memory, settings: Settings) -> EventStore:
    """The run's stream with the pool's routes."""
    return scope.events(
        RUN_STREAM,
        max_deliveries=settings.max_deliveries,
        reclaim_idle_ms=settings.reclaim_idle_ms,
        routes=POOL_ROUTES,
    )


async def start_run(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    request: RunRequested,
    issuer: str,
    *,
    tenant: str,
) -> None:
    """Start a run that was admitted: its index entry (with the tenant that submitted it),
    its request, a ticket for research (in ``tenant``'s lane). Each step is idempotent: a
    start made twice starts one run."""
    run_id = scope.namespace
    index = scope.runs
    if await index.get(run_id) is None:
        started = datetime.now(UTC)
        entry = RunEntry(run_id=run_id, topic=request.topic, started_at=started, tenant=tenant)
        await index.put(entry)
    events = run_events(scope, settings)
    event = new_event(EventType.RUN_REQUESTED, ORCHESTRATOR, request)
    await events.publish(event, idempotency_key=orchestrator_key(EventType.RUN_REQUESTED))
    await ticket(queues, events, [event], issuer, tenant)


async def coordinate(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
) -> str:
    """Look at the run and finish it if it is settled or failed; returns its state
    (``running``, ``completed`` or ``failed``)."""
    events = run_events(scope, settings)
    state = RunState()
    tracker = RunTracker()
    for event in await read_log(events):
        tracker.apply(state, event)
    if state.report_path is not None:
        return "completed"
    entry = await scope.runs.get(scope.namespace)
    if state.failures:
        reason = f"the run cannot finish: {state.failures[0]}"
        failed = new_event(EventType.RUN_FAILED, ORCHESTRATOR, RunFailed(reason=reason[:4000]))
        await events.publish(failed, idempotency_key=orchestrator_key(EventType.RUN_FAILED))
        await _close(scope, entry, state, error=reason)
        await release(scope, settings, queues, issuer)
        return "failed"
    if not state.done:
        return "running"
    started_at = entry.started_at if entry is not None else datetime.now(UTC)
    elapsed = (datetime.now(UTC) - started_at).total_seconds()
    timings = {
        "total": elapsed,
        "llm_by_agents": sum(state.llm_seconds.values()),
    }
    report_path, _record = await write_outputs(
        settings,
        scope.namespace,
        state,
        scope.memory,
        events,
        scope.db,
        timings,
        time.monotonic() - elapsed,
        [],
    )
    done = new_event(
        EventType.RUN_COMPLETED, ORCHESTRATOR, RunCompleted(report_path=str(report_path))
    )
    await events.publish(done, idempotency_key=orchestrator_key(EventType.RUN_COMPLETED))
    await _close(scope, entry, state, report_path=str(report_path))
    await release(scope, settings, queues, issuer)
    return "completed"


async def _close(
    scope: Memory,
    entry: RunEntry | None,
    state: RunState,
    *,
    error: str | None = None,
    report_path: str | None = None,
) -> None:
    """Record how the run ended in the run index (as the orchestrator does)."""
    now = datetime.now(UTC)
    entry = entry or RunEntry(run_id=scope.namespace, topic=state.topic, started_at=now)
    ended = entry.model_copy(
        update={
            "state": "failed" if error is not None else "completed",
            "sections": len(state.sections),
            "approved": sum(s.state.settled for s in state.sections.values()),
            "ended_at": entry.ended_at or now,
            "error": error,
            "report_path": report_path,
        }
    )
    await scope.runs.put(ended)


async def release(
    scope: Memory, settings: Settings, queues: Mapping[str, WorkQueue], issuer: str
) -> None:
    """Free the run's place among its tenant's runs in flight; start the runs that take it."""
    tenant = await Submissions(scope.client).tenant_of(scope.namespace)
    if tenant is None:
        return  # not a submitted run
    admission = Admission(scope.client, tenant)
    for run_id, request in await admission.release(
        scope.namespace, limit=settings.tenant_max_inflight
    ):
        logger.info("run %s of tenant %s starts (a place is free)", run_id, tenant)
        next_scope = scope.scope(run_id)
        await start_run(
            next_scope,
            settings,
            queues,
            RunRequested.model_validate_json(request),
            issuer,
            tenant=tenant,
        )
