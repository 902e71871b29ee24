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

**The sweep.** Each coordinator worker also makes a pass over every tenant's runs in flight
every few seconds (:func:`sweep`); it repairs what a process that died between two steps
left, and enforces the run timeout:

- a run in flight whose request is still kept was admitted or released but not started (the
  starter died in between): it is started (idempotent: a run started twice is one run);
- a run in flight whose index entry says it ended (a coordinator died between closing it and
  releasing its place): its place is freed;
- a run that has run longer than ``run_timeout_seconds`` (from its start, not its submission)
  fails: ``run.failed`` with a one-line reason, its index entry closed as failed, its place
  freed and the tenant's next run started. Workers then acknowledge its remaining tickets
  without handling them. A run settling in the same instant may also publish
  ``run.completed``; the index keeps whichever closed it last.

A sweep reads the tenants' set, one script per tenant (its runs in flight with their kept
requests) and one HMGET of their index entries: a few round trips per tenant, whatever the
number of runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from agentmem.agents.idempotency import orchestrator_key
from agentmem.agents.settings import Settings
from agentmem.memory import EventStore, Memory, RunEntry
from agentmem.memory.admission import Admission, Submissions
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.lifecycle import ORCHESTRATOR, FinishedRun, write_outputs
from agentmem.orchestrator.report import read_log
from agentmem.orchestrator.tracker import RunState, RunTracker
from agentmem.protocol.events import (
    RUN_STREAM,
    EventType,
    RunCompleted,
    RunFailed,
    RunRequested,
    new_event,
)
from agentmem.service.routes import POOL_ROUTES, ticket

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
    await Admission(scope.client, tenant).started(run_id)


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
    if entry is not None and entry.state != "running":
        return entry.state  # it ended already (timed out, or failed)
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
    finished = FinishedRun(
        scope.namespace,
        state,
        started=time.monotonic() - elapsed,
        timings={"llm_by_agents": sum(state.llm_seconds.values())},
    )
    outputs = await write_outputs(finished, scope, events, Path(settings.reports_dir))
    report_path = outputs.report_path
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


async def sweep(
    root: Memory, settings: Settings, queues: Mapping[str, WorkQueue], issuer: str
) -> int:
    """One pass over every tenant's runs in flight (see the module's notes); returns how many
    runs it started, ended or released."""
    acted = 0
    now = datetime.now(UTC)
    for tenant in await Submissions(root.client).tenants():
        flight = await Admission(root.client, tenant).in_flight()
        for run_id, request in flight:
            if request is not None:
                logger.info(
                    "run %s of tenant %s is in flight, not started: starting it", run_id, tenant
                )
                await start_run(
                    root.scope(run_id),
                    settings,
                    queues,
                    RunRequested.model_validate_json(request),
                    issuer,
                    tenant=tenant,
                )
                acted += 1
        started = [run_id for run_id, request in flight if request is None]
        for entry in await root.runs.get_many(started):
            scope = root.scope(entry.run_id)
            if entry.state != "running":  # ended, and its place not yet freed
                await release(scope, settings, queues, issuer)
                acted += 1
            elif (now - entry.started_at).total_seconds() > settings.run_timeout_seconds:
                await time_out(scope, settings, queues, issuer, entry)
                acted += 1
    return acted


async def time_out(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    entry: RunEntry,
) -> None:
    """Fail a run that outlived ``run_timeout_seconds``: ``run.failed`` with one line, its
    index entry closed, its place freed."""
    reason = (
        f"the run did not end within {settings.run_timeout_seconds:g} s "
        "(AGENTMEM_RUN_TIMEOUT_SECONDS); submit it again, or raise the timeout"
    )
    logger.warning("run %s: %s", scope.namespace, reason)
    events = run_events(scope, settings)
    state = RunState()
    tracker = RunTracker()
    for event in await read_log(events):
        tracker.apply(state, event)
    failed = new_event(EventType.RUN_FAILED, ORCHESTRATOR, RunFailed(reason=reason))
    await events.publish(failed, idempotency_key=orchestrator_key(EventType.RUN_FAILED))
    await _close(scope, entry, state, error=reason)
    await release(scope, settings, queues, issuer)
