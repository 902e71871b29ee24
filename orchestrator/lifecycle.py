"""One run, start to finish: request, launch, follow, report, stop.

The orchestrator decides order and supervision only. It publishes the request on the run's
stream, launches the agents, follows the stream until every planned section is settled, and
writes the report from what the agents left in the memory layer. It never does an agent's work,
and it knows no Redis key or SQL: it talks to the stores through :mod:`memory`.

A run's life is one :class:`Run` object, which owns what the run opens (its span, a zygote when
none is given, the memory, the :class:`~orchestrator.supervisor.Supervisor` and its agents)
and what it learns (its :class:`~orchestrator.tracker.RunState`, its timings). Its steps are
methods called in order by :meth:`Run.execute`: start the researchers and connect (at once: the
researchers connect while this process does), request the run, follow its log (starting the
other agents in stages) until it is settled, then stop the agents and write the outputs while
they exit, and close the run's index entry. :func:`write_outputs` writes a finished run's
report, record and timeline from a :class:`FinishedRun`; a pool's coordinator, which finishes
runs it never followed, calls it too. :func:`run_report` is the same run as one call.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar

import anyio

from agentmem.agents import Settings
from agentmem.agents.idempotency import orchestrator_key
from agentmem.agents.llm_calls import LLM_SLOTS
from agentmem.agents.llm_choice import uses_stub
from agentmem.memory import (
    AgentMemoryError,
    AgentStatus,
    EventStore,
    Memory,
    RedisAgentMemory,
    RunEntry,
    ServerUnavailableError,
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


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """What a settled run's outputs are written from."""

    run_id: str
    state: RunState
    started: float  # time.monotonic() when the run began: the record's "total" counts from it
    timings: Mapping[str, float] = field(default_factory=dict)  # its parts, measured so far
    restarts: Sequence[Restart] = ()  # the agent processes the supervisor restarted


@dataclass(frozen=True, slots=True)
class RunOutputs:
    """Where :func:`write_outputs` wrote a run's report, record and timeline."""

    report_path: Path
    record_path: Path
    timeline_path: Path
    timings: dict[str, float]  # as the record has them, "total" included


def new_run_id() -> str:
    """``run-<UTC date and time>-<random>``: sortable, unique, a valid namespace."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


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
    run = Run(
        settings,
        run_id=run_id,
        topic=topic,
        sources=sources,
        specs=agent_specs(writers, reviewers, researchers),
        progress=progress,
        launcher=launcher,
    )
    return await run.execute()


class Run:
    """One run's life, from its request to its report: ``await Run(...).execute()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        run_id: str,
        topic: str,
        sources: Sequence[SourceDoc],
        specs: Sequence[AgentSpec],
        progress: Progress,
        launcher: AgentLauncher | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.topic = topic
        self.sources = list(sources)
        self.specs = list(specs)
        self.progress = progress
        self.launcher = launcher
        self.state = RunState()
        self.timings: dict[str, float] = {}
        self.started = 0.0  # time.monotonic() when execute() began
        # Set as the run goes, by the step that opens each (execute() runs them in order):
        self._supervisor: Supervisor | None = None
        self._memory: Memory | None = None
        self._events: EventStore | None = None
        self._entry: RunEntry | None = None  # once the run is requested

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            msg = "the run's supervisor exists once execute() has begun"
            raise RuntimeError(msg)
        return self._supervisor

    @property
    def memory(self) -> Memory:
        if self._memory is None:
            msg = "the run's memory is open once execute() has connected"
            raise RuntimeError(msg)
        return self._memory

    @property
    def events(self) -> EventStore:
        if self._events is None:
            msg = "the run's events are open once execute() has connected"
            raise RuntimeError(msg)
        return self._events

    async def execute(self) -> RunResult:
        """Run it: every step in order; on any error the run's entry says it failed."""
        self.started = time.monotonic()
        telemetry.name_process("orchestrator")
        async with AsyncExitStack() as stack:
            # The run's trace: its request carries this span, and the agents get it to start from.
            stack.enter_context(
                telemetry.span(f"run {self.run_id}", {"agentmem.run_id": self.run_id})
            )
            launcher = self.launcher or stack.enter_context(AgentLauncher.start())
            self._supervisor = Supervisor(
                self.run_id,
                self.settings,
                Path(self.settings.data_dir) / "logs" / path_part(self.run_id),
                notify=self.progress.message,
                launcher=launcher,
                traceparent=telemetry.current_traceparent(),
            )
            try:
                async with self._supervisor:
                    await self.connect(stack)
                    await self.request()
                    outputs = await self.follow()
                if outputs is None:  # raised here, outside the supervisor's task group: no group
                    self.timed_out()
            except BaseException as exc:
                await self.close(error=exc)
                raise
            await self.close(report_path=outputs.report_path)
        return RunResult(
            self.run_id, outputs.report_path, outputs.record_path, self.state, self.timings
        )

    async def connect(self, stack: AsyncExitStack) -> None:
        """Start the researchers, and open the memory while they start (it stays open until
        ``stack``, :meth:`execute`'s, closes): they connect while this process does, and wait
        for the request it is about to publish (as agents that join ahead do)."""
        self.supervisor.start([s for s in self.specs if s.role == Role.RESEARCH])
        config = self.settings.memory_config(client_name="agentmem:orchestrator")
        try:
            m = await stack.enter_async_context(open_memory(config, self.run_id))
        except ServerUnavailableError as exc:  # said at once, then waited for
            from rich.markup import escape  # a quiet run imports no rich

            self.progress.message(
                f"[yellow]{escape(str(exc))}[/]; waiting up to {CONNECT_WAIT_SECONDS:.0f} s"
            )
            m = await stack.enter_async_context(
                open_memory(config, self.run_id, wait=CONNECT_WAIT_SECONDS)
            )
        self._memory, self._events = m, m.events(RUN_STREAM, routes=ROUTES)
        self.timings["connect"] = time.monotonic() - self.started

    async def request(self) -> None:
        """Open the run's index entry and publish its request.

        Redis may drop out for a moment here too: both steps are idempotent, so each is tried
        again while it is unreachable (bounded), as every later step of the run is."""
        events = self.events
        entry = await _riding_out(
            lambda: open_entry(self.memory.runs, events, self.run_id, self.topic)
        )
        if entry.resumed:
            self.progress.message(
                f"[yellow]resuming run {self.run_id}[/] (started "
                f"{entry.started_at:%Y-%m-%d %H:%M:%S} UTC): what it already did is kept and "
                "not done again"
            )
        request = RunRequested(topic=self.topic, sources=self.sources)
        await _riding_out(lambda: _announce(events, EventType.RUN_REQUESTED, request))
        self._entry = entry

    async def follow(self) -> RunOutputs | None:
        """Start the other agents in stages and follow the log, folding it into the run's
        state, until every section is settled; then stop the agents and write the outputs
        while they exit. None if the run timed out first."""
        tracker = RunTracker()
        m = self.memory
        slots = (
            None
            if uses_stub(self.settings)
            else m.semaphore(LLM_SLOTS, self.settings.llm_max_concurrency)
        )
        outputs: RunOutputs | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(start_in_stages, self.supervisor, m.memory, self.specs)
            tg.start_soon(self.progress.follow, m.memory, self.state, slots)
            with anyio.move_on_after(self.settings.run_timeout_seconds) as watching:
                await _watch(self.events, tracker, self.state, self.progress)
            if not watching.cancelled_caught:
                self.supervisor.stop()
                outputs = await self.write_outputs()
            tg.cancel_scope.cancel()
        return outputs

    async def write_outputs(self) -> RunOutputs:
        """Write the report, record and timeline (while the agents stop), then say so."""
        self.timings["agents"] = time.monotonic() - self.started - self.timings["connect"]
        self.timings["llm_by_agents"] = sum(self.state.llm_seconds.values())  # llm.called
        finished = FinishedRun(
            self.run_id, self.state, self.started, self.timings, self.supervisor.restart_log
        )
        reports = Path(self.settings.reports_dir)
        async for attempt in retrying(ServerUnavailableError, attempts=30, timeout=120, maximum=5):
            with attempt:
                outputs = await write_outputs(finished, self.memory, self.events, reports)
                done = RunCompleted(report_path=str(outputs.report_path))
                await _announce(self.events, EventType.RUN_COMPLETED, done)
                self.timings.update(outputs.timings)
                return outputs
        msg = "retrying() returns or raises"
        raise AssertionError(msg)  # pragma: no cover

    def timed_out(self) -> NoReturn:
        """Raise the error of a run that did not finish within ``run_timeout_seconds``."""
        pending = self.state.unsettled
        msg = (
            f"the run did not finish within {self.settings.run_timeout_seconds:.0f} s "
            f"(sections not done: {', '.join(pending) or 'none planned yet'}); "
            f"see the agent logs in {self.supervisor.log_dir}"
        )
        raise RunFailedError(msg)

    async def close(
        self, *, error: BaseException | None = None, report_path: Path | None = None
    ) -> None:
        """Record in the run's index entry how it ended (once it was requested): its report,
        or its ``error``; a run that cannot finish also says so on its log, for agents that
        joined from elsewhere."""
        if self._entry is None:
            return
        index, entry, state = self.memory.runs, self._entry, self.state
        if error is None:
            await close_entry(index, entry, state, report_path=str(report_path))
            return
        if any(isinstance(e, RunFailedError) for e in leaves(error)):
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await _announce_failure(self.events, failure_text(error))
        await close_entry(index, entry, state, error=failure_text(error))


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


async def start_in_stages(
    supervisor: Supervisor,
    memory: RedisAgentMemory,
    specs: Sequence[AgentSpec],
    wait_seconds: float = STAGE_WAIT_SECONDS,
) -> None:
    """Start the research agents (those not started yet), then the others once those are
    ready (or after ``wait_seconds``). Research is the first work of a run and nothing else
    can begin before it; agent processes starting at once share the CPUs, so the researcher
    gets them first and the writers and reviewers start while it plans and extracts. Returns
    once every agent is started (the supervisor keeps them)."""
    first = [spec for spec in specs if spec.role == Role.RESEARCH]
    rest = [spec for spec in specs if spec.role != Role.RESEARCH]
    supervisor.start(first)
    with anyio.move_on_after(wait_seconds):
        for spec in first:  # polled: readiness is a status key in Redis, set by the agent
            while True:
                if await _status_or_none(memory, spec.name) is not None:
                    break
                await anyio.sleep(0.02)
    supervisor.start(rest)


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


async def write_outputs(
    run: FinishedRun, memory: Memory, events: EventStore, reports_dir: Path
) -> RunOutputs:
    """Write ``run``'s report (markdown), record (JSON) and timeline (HTML) into
    ``reports_dir``, from what the agents left in ``memory`` and on ``events``. Idempotent: a
    second call writes the same files again."""
    reads = await read_run(run.state, memory.memory, events, memory.db)
    histories = section_histories(reads)
    await anyio.Path(reports_dir).mkdir(parents=True, exist_ok=True)
    name = path_part(run.run_id)
    report_path = reports_dir / f"{name}.md"
    record_path = reports_dir / f"{name}.json"
    timeline_path = reports_dir / f"{name}.html"
    report = render_markdown(run.run_id, run.state, histories, reads.cited)
    await anyio.Path(report_path).write_text(report)
    timings = {**run.timings, "total": time.monotonic() - run.started}
    restarts = list(run.restarts)
    record = run_record(run.state, reads, run_id=run.run_id, timings=timings, restarts=restarts)
    await anyio.Path(record_path).write_text(dump_json(record))
    picture = timeline_html(run.run_id, run.state.topic, reads.log, reads.dead_letters, restarts)
    await anyio.Path(timeline_path).write_text(picture)
    return RunOutputs(report_path, record_path, timeline_path, timings)
