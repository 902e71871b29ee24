"""One run, start to finish: request, launch, follow, report, stop.

The orchestrator decides order and supervision only. It publishes the request on the run's
stream, launches the agents, follows the stream until every planned section is settled, and
writes the report from what the agents left in the memory layer. It never does an agent's work,
and it knows no Redis key or SQL: it talks to the stores through :mod:`memory`.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
from pydantic import SecretStr

from agentmem.agents import Settings
from agentmem.agents.idempotency import orchestrator_key
from agentmem.agents.llm_calls import LLM_SLOTS
from agentmem.agents.llm_choice import uses_stub
from agentmem.memory import (
    AgentMemoryError,
    AgentStatus,
    EventStore,
    RedisAgentMemory,
    Semaphore,
    ServerUnavailableError,
    SharedAgentDB,
    leaves,
    open_memory,
    path_part,
    retrying,
    telemetry,
)
from agentmem.orchestrator.launcher import AgentLauncher
from agentmem.orchestrator.progress import Progress
from agentmem.orchestrator.report import (
    dump_json,
    read_run,
    render_markdown,
    run_record,
    section_histories,
)
from agentmem.orchestrator.run_entries import close_entry, failure_text, open_entry
from agentmem.orchestrator.supervisor import AgentSpec, Restart, Supervisor
from agentmem.orchestrator.timeline import timeline_html
from agentmem.orchestrator.tracker import RunState, RunTracker
from agentmem.protocol import ROUTES, RUN_STREAM, EventType, Role, new_event
from agentmem.protocol.events import EventPayload, RunCompleted, RunFailed, RunRequested, SourceDoc

logger = logging.getLogger(__name__)

ORCHESTRATOR = "orchestrator"
_T = TypeVar("_T")
CONNECT_WAIT_SECONDS = 10.0  # how long a run waits for servers that do not answer at its start
START_OUTAGE_SECONDS = 30.0  # how long the start of a run waits out an unreachable Redis
STAGE_WAIT_SECONDS = 2.0  # the longest writers and reviewers wait for the researchers to be ready


class RunFailedError(AgentMemoryError, RuntimeError):
    """The run cannot finish: an agent failed for good, or it ran out of time."""


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    report_path: Path
    record_path: Path
    state: RunState
    timings: dict[str, float]


def new_run_id() -> str:
    """``run-<UTC date and time>-<random>``: sortable, unique, a valid namespace."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def agent_env(settings: Settings) -> dict[str, str]:
    """The environment that hands ``settings`` to an agent process."""
    env = dict(os.environ)
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        alias = field.validation_alias
        key = alias if isinstance(alias, str) else f"AGENTMEM_{name.upper()}"
        env[key] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env["PYTHONUNBUFFERED"] = "1"
    traceparent = telemetry.current_traceparent()  # the run's span: the agents' parent
    if traceparent is not None:
        env[telemetry.TRACEPARENT_ENV] = traceparent
    return env


def agent_specs(writers: int = 1, reviewers: int = 1, researchers: int = 1) -> list[AgentSpec]:
    """``researchers`` research agents, ``writers`` writing agents, ``reviewers`` review agents."""
    counts = {Role.RESEARCH: researchers, Role.WRITER: writers, Role.REVIEW: reviewers}
    return [AgentSpec(role, n) for role, count in counts.items() for n in range(1, count + 1)]


async def run_report(
    settings: Settings,
    *,
    run_id: str,
    topic: str,
    sources: Sequence[SourceDoc],
    writers: int,
    progress: Progress,
    reviewers: int = 1,
    researchers: int = 1,
    launcher: AgentLauncher | None = None,
) -> RunResult:
    """Run the agents on ``sources`` until the report is written; returns where it is.

    The agents are forked from ``launcher``'s zygote; without one, a zygote is started here
    (start it earlier, :meth:`AgentLauncher.start`, to overlap its imports with other work).
    """
    config = settings.memory_config(client_name="agentmem:orchestrator")
    started = time.monotonic()
    timings: dict[str, float] = {}
    telemetry.name_process("orchestrator")
    async with AsyncExitStack() as stack:
        # The run's trace: its request carries this span, and the agents get it to start from.
        stack.enter_context(telemetry.span(f"run {run_id}", {"agentmem.run_id": run_id}))
        if launcher is None:
            launcher = stack.enter_context(AgentLauncher.start())
        supervisor = Supervisor(
            run_id,
            agent_env(settings),
            Path(settings.data_dir) / "logs" / path_part(run_id),
            notify=progress.message,
            launcher=launcher,
        )
        specs = agent_specs(writers, reviewers, researchers)
        # The researchers start first, now: they connect while this process does, and wait
        # for the request it is about to publish (as agents that join ahead do).
        stack.push_async_callback(supervisor.stop_early)
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.start_early, [s for s in specs if s.role == Role.RESEARCH])
            try:
                m = await stack.enter_async_context(open_memory(config, run_id))
            except ServerUnavailableError as exc:  # said at once, then waited for
                from rich.markup import escape  # a quiet run imports no rich

                progress.message(
                    f"[yellow]{escape(str(exc))}[/]; waiting up to {CONNECT_WAIT_SECONDS:.0f} s"
                )
                m = await stack.enter_async_context(
                    open_memory(config, run_id, wait=CONNECT_WAIT_SECONDS)
                )
        memory, events, db = m.memory, m.events(RUN_STREAM, routes=ROUTES), m.db
        timings["connect"] = time.monotonic() - started

        # Redis may drop out for a moment here too: both steps are idempotent, so each is tried
        # again while it is unreachable (bounded), as every later step of the run is.
        entry = await _riding_out(lambda: open_entry(m.runs, events, run_id, topic))
        if entry.resumed:
            progress.message(
                f"[yellow]resuming run {run_id}[/] (started {entry.started_at:%Y-%m-%d %H:%M:%S} "
                "UTC): what it already did is kept and not done again"
            )
        request = RunRequested(topic=topic, sources=list(sources))
        await _riding_out(lambda: _announce(events, EventType.RUN_REQUESTED, request))
        state = RunState()
        outputs: list[Path] = []

        async def finish() -> None:
            """Write the report, record and timeline (while the agents stop), then say so."""
            timings["agents"] = time.monotonic() - started - timings["connect"]
            timings["llm_by_agents"] = sum(state.llm_seconds.values())  # from llm.called events
            async for attempt in retrying(
                ServerUnavailableError, attempts=30, timeout=120, maximum=5
            ):
                with attempt:
                    outputs[:] = await write_outputs(
                        settings,
                        run_id,
                        state,
                        memory,
                        events,
                        db,
                        timings,
                        started,
                        supervisor.restart_log,
                    )
                    done = RunCompleted(report_path=str(outputs[0]))
                    await _announce(events, EventType.RUN_COMPLETED, done)

        try:
            await _follow(
                settings,
                state,
                supervisor=supervisor,
                memory=memory,
                events=events,
                progress=progress,
                specs=specs,
                llm_slots=None
                if uses_stub(settings)
                else m.semaphore(LLM_SLOTS, settings.llm_max_concurrency),
                settled=finish,
            )
        except BaseException as exc:
            if any(isinstance(e, RunFailedError) for e in leaves(exc)):
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await _announce_failure(events, failure_text(exc))
            await close_entry(m.runs, entry, state, error=failure_text(exc))
            raise
        report_path, record_path = outputs
        await close_entry(m.runs, entry, state, report_path=str(report_path))
    return RunResult(run_id, report_path, record_path, state, timings)


async def _riding_out(step: Callable[[], Awaitable[_T]]) -> _T:
    """``step()`` (idempotent), tried again while Redis is unreachable, for up to
    :data:`START_OUTAGE_SECONDS`; then its error is raised."""
    async for attempt in retrying(
        ServerUnavailableError, attempts=1_000, timeout=START_OUTAGE_SECONDS, maximum=1.0
    ):
        with attempt:
            return await step()
    msg = "retrying() returns or raises"
    raise AssertionError(msg)  # pragma: no cover


async def _announce(events: EventStore, event_type: EventType, payload: EventPayload) -> None:
    """Publish the orchestrator's own event, once (it is keyed by its type)."""
    event = new_event(event_type, ORCHESTRATOR, payload)
    await events.publish(event, idempotency_key=orchestrator_key(event_type))


async def _announce_failure(events: EventStore, reason: str) -> None:
    """Tell agents that joined from elsewhere that the run is over (they stop on it)."""
    try:
        await _announce(events, EventType.RUN_FAILED, RunFailed(reason=reason[:4000]))
    except AgentMemoryError as exc:
        logger.warning("could not publish run.failed: %s", exc)


async def _follow(
    settings: Settings,
    state: RunState,
    *,
    supervisor: Supervisor,
    memory: RedisAgentMemory,
    events: EventStore,
    progress: Progress,
    specs: Sequence[AgentSpec],
    llm_slots: Semaphore | None = None,
    settled: Callable[[], Awaitable[None]],
) -> None:
    """Run the agents and follow the log, folding it into ``state``, until every section is
    settled; then tell the agents to stop and await ``settled()`` while they do."""
    tracker = RunTracker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(start_in_stages, supervisor, memory, specs)
        tg.start_soon(progress.follow, memory, state, llm_slots)
        with anyio.move_on_after(settings.run_timeout_seconds) as watching:
            await _watch(events, tracker, state, progress)
        if not watching.cancelled_caught:
            supervisor.stop()
            await settled()
        tg.cancel_scope.cancel()
    if watching.cancelled_caught:  # raised here, outside the task group: not in a group
        pending = state.unsettled
        msg = (
            f"the run did not finish within {settings.run_timeout_seconds:.0f} s "
            f"(sections not done: {', '.join(pending) or 'none planned yet'}); "
            f"see the agent logs in {supervisor.log_dir}"
        )
        raise RunFailedError(msg)


async def start_in_stages(
    supervisor: Supervisor,
    memory: RedisAgentMemory,
    specs: Sequence[AgentSpec],
    wait_seconds: float = STAGE_WAIT_SECONDS,
) -> None:
    """Start the research agents, then the others once those are ready (or after
    ``wait_seconds``). Research is the first work of a run and nothing else can
    begin before it; agent processes starting at once share the CPUs, so the researcher gets
    them first and the writers and reviewers start while it plans and extracts."""
    first = [spec for spec in specs if spec.role == Role.RESEARCH]
    rest = [spec for spec in specs if spec.role != Role.RESEARCH]
    async with anyio.create_task_group() as tg:
        tg.start_soon(supervisor.run, first)
        with anyio.move_on_after(wait_seconds):
            for spec in first:  # polled: readiness is a status key in Redis, set by the agent
                while True:
                    if await _status_or_none(memory, spec.name) is not None:
                        break
                    await anyio.sleep(0.02)
        tg.start_soon(supervisor.run, rest)


async def _status_or_none(memory: RedisAgentMemory, agent_id: str) -> AgentStatus | None:
    try:
        return await memory.get_agent_status(agent_id)
    except ServerUnavailableError:
        return None


async def _watch(
    events: EventStore, tracker: RunTracker, state: RunState, progress: Progress
) -> None:
    """Apply the log's events to ``state`` until the run is settled; ride out Redis outages."""
    last_id = "0-0"
    while True:
        try:
            async with aclosing(events.subscribe(last_id)) as log:
                async for event in log:
                    last_id = event.event_id or last_id
                    tracker.apply(state, event)
                    progress.event(event)
                    if state.failures:
                        msg = f"the run cannot finish: {state.failures[0]}"
                        raise RunFailedError(msg)
                    if state.done:
                        return
        except ServerUnavailableError as exc:
            progress.message(f"[yellow]Redis unreachable ({exc}); waiting for it…[/]")
            await anyio.sleep(1.0)


async def write_outputs(  # noqa: PLR0917
    settings: Settings,
    run_id: str,
    state: RunState,
    memory: RedisAgentMemory,
    events: EventStore,
    db: SharedAgentDB,
    timings: dict[str, float],
    started: float,
    restarts: list[Restart],
) -> tuple[Path, Path]:
    reads = await read_run(state, memory, events, db)
    histories = section_histories(reads)
    reports = Path(settings.reports_dir)
    await anyio.Path(reports).mkdir(parents=True, exist_ok=True)
    report_path = reports / f"{path_part(run_id)}.md"
    record_path = reports / f"{path_part(run_id)}.json"
    await anyio.Path(report_path).write_text(render_markdown(run_id, state, histories, reads.cited))
    timings["total"] = time.monotonic() - started
    record = run_record(state, reads, run_id=run_id, timings=timings, restarts=restarts)
    await anyio.Path(record_path).write_text(dump_json(record))
    picture = timeline_html(run_id, state.topic, reads.log, reads.dead_letters, restarts)
    await anyio.Path(reports / f"{path_part(run_id)}.html").write_text(picture)
    return report_path, record_path
