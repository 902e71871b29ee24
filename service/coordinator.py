"""What finishes a pooled run, and what starts one: the coordinator role's work.

The per-run orchestrator follows its run's log until every section is settled, then writes
the report and announces the end. In the pool, a coordinator worker does the same on each
ticket of the run's ``coordinator`` route (the run was planned, a section settled, an agent
failed): it brings the run's :class:`~orchestrator.tracker.RunState` (the same projection the
orchestrator uses) up to date and, once the run is settled or failed, writes the outputs,
ends the run in the index, publishes ``run.completed`` or ``run.failed`` (once, by key) and
releases the run's place among its tenant's runs in flight, starting the tenant's next
waiting runs. Every step is idempotent, so two coordinators that see the same last event both
finish the run with one effect (the same files, one end event).

**The fold, kept.** A coordinator worker keeps each open run's state with the id of the last
event it applied (:class:`RunFold`) and, on the run's next ticket, applies only the events
after that id: each event is read once per worker, not once per ticket (a full replay per
ticket is quadratic in the run's length). This stays exact when several coordinators serve
one run: the log is append-only and ordered, so the events after the last one a worker
applied are exactly the ones it has not seen, whoever published or handled them. A worker
with no state for the run (it never served it, restarted, or let its scope go) folds the log
from the start. One worker's coordinations of one run take turns (a lock per fold).

**One outcome.** A run ends once: the index's :meth:`~memory.run_index.RunIndex.conclude`
writes the ending entry only while the run is still running (one script). The coordinator
(completed or failed) and the sweep's timeout both end the run there *first* and publish
their end event only if their entry was kept, so a run settling in the instant it times out
has one end event and one outcome. One that dies between the two leaves the run ended with
its place held: the sweep publishes the end event the index records (by the same key) and
frees the place.

**The sweep.** Each coordinator worker also makes a pass over every tenant's runs in flight
every few seconds (:func:`sweep`); it repairs what a process that died between two steps
left, and enforces the run timeout:

- a run in flight whose request is still kept was admitted or released but not started (the
  starter died in between): it is started (idempotent: a run started twice is one run);
- a run in flight whose index entry says it ended (a coordinator died between ending it and
  releasing its place): its end event is published (a no-op by key if it was) and its place
  freed;
- a run that has run longer than ``run_timeout_seconds`` (from its start, not its submission)
  fails, unless it ended first: ``run.failed`` with a one-line reason, its index entry
  closed as failed, its place freed and the tenant's next run started. Workers then
  acknowledge its remaining tickets without handling them.

**Isolated.** An error on one tenant or one run (the servers, a bug) is logged in one line
naming it and the pass goes on with the others; the next pass tries it again. A run whose kept
request can never be published (it does not parse, or is over the memory's event cap: the
submitter checks this first, but requests kept before that check, or under a lower cap, remain)
is not retried forever: it fails with that reason, its request is dropped and its place freed.
A release that cannot start a run it moved in flight logs it and leaves it to the sweep.

A sweep reads the tenants' set, one script per tenant (its runs in flight with their kept
requests) and one HMGET of their index entries: a few round trips per tenant, whatever the
number of runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
from pydantic import ValidationError

from agentmem.agents.idempotency import orchestrator_key
from agentmem.agents.settings import Settings
from agentmem.memory import AgentMemoryError, EventStore, InvalidValueError, Memory, RunEntry
from agentmem.memory.admission import Admission, Submissions
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.lifecycle import ORCHESTRATOR, FinishedRun, write_outputs
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


@dataclass
class RunFold:
    """One run's state as a coordinator worker folded it so far, and the id of the last event
    applied (see the module's notes)."""

    state: RunState = field(default_factory=RunState)
    last_id: str = "0-0"
    read: int = 0  # events read from the log, in all (each once)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    _tracker: RunTracker = field(default_factory=RunTracker)

    async def catch_up(self, events: EventStore) -> RunState:
        """Apply the events after the last one applied (hold :attr:`lock`)."""
        while page := await events.read_events(since=self.last_id, count=1000):
            for event in page:
                self._tracker.apply(self.state, event)
            self.last_id = page[-1].event_id or self.last_id
            self.read += len(page)
        return self.state


async def coordinate(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    fold: RunFold | None = None,
) -> str:
    """Look at the run and finish it if it is settled or failed; returns its state
    (``running``, ``completed`` or ``failed``). ``fold``: the run's state kept from its
    earlier tickets (None: fold the log from its start)."""
    fold = fold or RunFold()
    async with fold.lock:
        return await _coordinate(scope, settings, queues, issuer, fold)


async def _coordinate(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    fold: RunFold,
) -> str:
    events = run_events(scope, settings)
    state = await fold.catch_up(events)
    if state.report_path is not None:
        return "completed"
    entry = await scope.runs.get(scope.namespace)
    if entry is not None and entry.state != "running":
        return entry.state  # it ended already (timed out, or failed)
    if state.failures:
        reason = f"the run cannot finish: {state.failures[0]}"[:4000]
        return await end_run(scope, settings, queues, issuer, _ending(scope, entry, state, reason))
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
    ending = _ending(scope, entry, state, report_path=str(outputs.report_path))
    return await end_run(scope, settings, queues, issuer, ending)


def _ending(
    scope: Memory,
    entry: RunEntry | None,
    state: RunState,
    error: str | None = None,
    *,
    report_path: str | None = None,
) -> RunEntry:
    """The run's index entry as it ends (as the orchestrator records it)."""
    now = datetime.now(UTC)
    entry = entry or RunEntry(run_id=scope.namespace, topic=state.topic, started_at=now)
    return entry.model_copy(
        update={
            "state": "failed" if error is not None else "completed",
            "sections": len(state.sections),
            "approved": sum(s.state.settled for s in state.sections.values()),
            "ended_at": entry.ended_at or now,
            "error": error,
            "report_path": report_path,
        }
    )


async def end_run(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    ending: RunEntry,
) -> str:
    """End the run with ``ending`` unless it ended first (the index decides: one outcome);
    then, if this one was kept, its end event and the release of its place. Returns the
    outcome the run has."""
    kept = await scope.runs.conclude(ending)
    if kept != ending:
        logger.info("run %s had ended (%s) already", scope.namespace, kept.state)
        return kept.state
    await announce(scope, settings, kept)
    await release(scope, settings, queues, issuer)
    return kept.state


async def announce(scope: Memory, settings: Settings, entry: RunEntry) -> None:
    """Publish the end event that ``entry`` (ended) records: ``run.completed`` or
    ``run.failed``, once by key."""
    events = run_events(scope, settings)
    if entry.state == "completed":
        payload = RunCompleted(report_path=entry.report_path or "")
        done = new_event(EventType.RUN_COMPLETED, ORCHESTRATOR, payload)
        await events.publish(done, idempotency_key=orchestrator_key(EventType.RUN_COMPLETED))
    elif entry.state == "failed":
        reason = (entry.error or "the run failed")[:4000]
        failed = new_event(EventType.RUN_FAILED, ORCHESTRATOR, RunFailed(reason=reason))
        await events.publish(failed, idempotency_key=orchestrator_key(EventType.RUN_FAILED))


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
        try:
            parsed = RunRequested.model_validate_json(request)
            await start_run(scope.scope(run_id), settings, queues, parsed, issuer, tenant=tenant)
        except Exception as exc:
            logger.warning(
                "run %s of tenant %s did not start (%s); the sweep starts it or fails it",
                run_id,
                tenant,
                one_line(exc),
            )


async def sweep(
    root: Memory, settings: Settings, queues: Mapping[str, WorkQueue], issuer: str
) -> int:
    """One pass over every tenant's runs in flight (see the module's notes); returns how many
    runs it started, ended or released. An error on one tenant or one run is logged in one
    line naming it, and the pass goes on with the others (the next pass tries it again)."""
    acted = 0
    now = datetime.now(UTC)
    for tenant in await Submissions(root.client).tenants():
        try:
            acted += await _sweep_tenant(root, settings, queues, issuer, tenant=tenant, now=now)
        except Exception as exc:
            logger.warning("the sweep skipped tenant %s this pass: %s", tenant, one_line(exc))
    return acted


async def _sweep_tenant(
    root: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    *,
    tenant: str,
    now: datetime,
) -> int:
    acted = 0
    flight = await Admission(root.client, tenant).in_flight()
    for run_id, request in flight:
        if request is None:
            continue
        logger.info("run %s of tenant %s is in flight, not started: starting it", run_id, tenant)
        try:
            await _start_kept(
                root.scope(run_id), settings, queues, issuer, tenant=tenant, request=request
            )
            acted += 1
        except Exception as exc:
            logger.warning(
                "the sweep could not start run %s of tenant %s: %s", run_id, tenant, one_line(exc)
            )
    started = [run_id for run_id, request in flight if request is None]
    for entry in await root.runs.get_many(started):
        scope = root.scope(entry.run_id)
        try:
            if entry.state != "running":  # ended, and its place not yet freed
                await announce(scope, settings, entry)
                await release(scope, settings, queues, issuer)
                acted += 1
            elif (now - entry.started_at).total_seconds() > settings.run_timeout_seconds:
                await time_out(scope, settings, queues, issuer, entry)
                acted += 1
        except Exception as exc:
            logger.warning(
                "the sweep could not end run %s of tenant %s: %s",
                entry.run_id,
                tenant,
                one_line(exc),
            )
    return acted


async def _start_kept(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    *,
    tenant: str,
    request: str,
) -> None:
    """Start a run in flight from its kept request; one whose request can never be published
    (it does not parse, or breaks the memory's limits) is failed for good instead."""
    try:
        parsed = RunRequested.model_validate_json(request)
        await start_run(scope, settings, queues, parsed, issuer, tenant=tenant)
    except (InvalidValueError, ValidationError) as exc:
        reason = f"the run cannot start: {one_line(exc)}; submit it again, smaller"[:4000]
        await fail_unstartable(scope, settings, queues, issuer, tenant=tenant, reason=reason)


async def fail_unstartable(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    *,
    tenant: str,
    reason: str,
) -> None:
    """End a run in flight that can never start: its index entry closed as failed with
    ``reason`` (unless it ended first), its end event, its kept request dropped and its place
    freed for the tenant's next run. Each step is idempotent."""
    logger.warning("run %s of tenant %s fails: %s", scope.namespace, tenant, reason)
    entry = await scope.runs.get(scope.namespace) or RunEntry(
        run_id=scope.namespace, started_at=datetime.now(UTC), tenant=tenant
    )
    kept = await scope.runs.conclude(_ending(scope, entry, RunState(), reason))
    await announce(scope, settings, kept)
    await Admission(scope.client, tenant).started(scope.namespace)  # drop its request
    await release(scope, settings, queues, issuer)


def one_line(exc: BaseException) -> str:
    """An error as one line: its message with whitespace folded (a project error's message is
    one line already; a validation error's is not), or its type when it has none."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, AgentMemoryError) else f"{type(exc).__name__}: {text}"


async def time_out(
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
    entry: RunEntry,
) -> None:
    """Fail a run that outlived ``run_timeout_seconds`` unless it ended first:
    ``run.failed`` with one line, its index entry closed, its place freed."""
    reason = (
        f"the run did not end within {settings.run_timeout_seconds:g} s "
        "(AGENTMEM_RUN_TIMEOUT_SECONDS); submit it again, or raise the timeout"
    )
    logger.warning("run %s: %s", scope.namespace, reason)
    state = await RunFold().catch_up(run_events(scope, settings))
    await end_run(scope, settings, queues, issuer, _ending(scope, entry, state, reason))
