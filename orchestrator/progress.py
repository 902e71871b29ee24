"""Live progress for a person: each agent's status, each section's state and draft version.

On a terminal it is a live table (rich), refreshed twice a second from the agents' status
heartbeats and the run's events, with the time so far and how many sections are approved,
and a line on the LLM: calls in flight (the holders of the run's LLM semaphore), calls
done, retries, failures and tokens so far. Elsewhere (CI, pipes) one line per event; with
``--quiet``, nothing (and rich, whose imports delay the start of a run, is not imported).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from agentmem.memory import (
    AgentEvent,
    AgentStatus,
    RedisAgentMemory,
    Semaphore,
    ServerUnavailableError,
)
from agentmem.orchestrator.tracker import RunState
from agentmem.protocol import SectionState, parse_payload
from agentmem.protocol.events import (
    AgentFailed,
    LLMCalled,
    ProtocolError,
    RunPlanned,
    SectionApproved,
    SectionAssigned,
    SectionDrafted,
    SectionRevisionRequested,
)

if TYPE_CHECKING:
    from rich.console import Console, Group

_STATE_STYLE = {
    SectionState.APPROVED: "green",
    SectionState.ROUND_LIMIT: "yellow",
    SectionState.REVISING: "magenta",
}


class Progress:
    """Shows a run's progress on ``console``: a live table, plain lines, or nothing."""

    def __init__(self, console: Console | None, *, quiet: bool = False) -> None:
        """``console`` None: nothing is shown, as with ``quiet``."""
        self.console = None if quiet else console
        self.quiet = self.console is None
        self.live = self.console is not None and self.console.is_terminal
        self.started = time.monotonic()

    def message(self, text: str) -> None:
        """A one-off line (a restart, a warning), shown in every mode but quiet."""
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    def event(self, event: AgentEvent) -> None:
        """One line per event when there is no live table."""
        if self.console is None or self.live:
            return
        time = event.timestamp.strftime("%H:%M:%S")
        line = f"{time} {event.agent_id:<12} {event.event_type:<28} {_brief(event)}"
        self.console.print(line, soft_wrap=True, markup=False, highlight=False)

    async def follow(
        self, memory: RedisAgentMemory, state: RunState, llm_slots: Semaphore | None = None
    ) -> None:
        """Refresh the live table until cancelled (returns at once when not live)."""
        if self.console is None or not self.live:
            return
        from rich.live import Live

        with Live(console=self.console, refresh_per_second=4, transient=False) as live:
            agents: list[AgentStatus] = []
            in_flight: InFlight | None = None
            try:
                while True:
                    with contextlib.suppress(ServerUnavailableError):  # an outage stales the table
                        agents = await memory.list_live_agents()
                        if llm_slots is not None:
                            holders = await llm_slots.holders()
                            in_flight = InFlight(len(holders), llm_slots.limit)
                    elapsed = time.monotonic() - self.started
                    live.update(render(state, agents, elapsed, in_flight))
                    await anyio.sleep(0.5)
            finally:  # the final state, as the run ended
                live.update(render(state, agents, time.monotonic() - self.started))


@dataclass(frozen=True, slots=True)
class InFlight:
    """LLM calls in flight across the run now, and the run-wide cap on them."""

    calls: int
    limit: int


def llm_line(state: RunState, in_flight: InFlight | None = None) -> str:
    """One line on the run's LLM use so far: in flight, done, retries, failures, tokens."""
    totals = state.llm_totals
    parts = [] if in_flight is None else [f"{in_flight.calls} in flight (cap {in_flight.limit})"]
    parts += [
        f"{totals.calls} done",
        f"{totals.retries} retries",
        f"{totals.failed} failed",
        f"tokens {totals.prompt_tokens:,} prompt + {totals.completion_tokens:,} completion",
    ]
    return "LLM calls: " + ", ".join(parts)


def render(
    state: RunState,
    agents: list[AgentStatus],
    elapsed: float = 0.0,
    in_flight: InFlight | None = None,
) -> Group:
    """The agents table, the sections table (with the time so far and how many are done)
    and a line on the LLM calls."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    agent_table = Table(title="Agents", expand=False, title_justify="left")
    for column in ("agent", "status", "doing"):
        agent_table.add_column(column, overflow="fold", max_width=60)
    for status in agents:
        if state.done:  # the run is settled: what an agent last reported is over
            agent_table.add_row(status.agent_id, "[green]finished[/]", "")
        else:
            agent_table.add_row(status.agent_id, status.status, status.detail)
    settled = sum(s.state.settled for s in state.sections.values())
    title = (
        f"Sections: {settled}/{len(state.sections)} approved, {state.fact_count} facts, "
        f"{elapsed:.0f} s"
    )
    sections = Table(title=title, expand=False, title_justify="left")
    for column in ("section", "state", "version", "round", "last agent"):
        sections.add_column(column, overflow="fold", max_width=50)
    for section in state.sections.values():
        style = _STATE_STYLE.get(section.state, "")
        sections.add_row(
            section.plan.title,
            f"[{style}]{section.state}[/]" if style else section.state,
            str(section.version or "-"),
            str(section.round),
            section.agent,
        )
    if not state.planned:
        sections.add_row("(planning…)", "", "", "", "")
    return Group(agent_table, sections, Text(llm_line(state, in_flight)))


def _brief(event: AgentEvent) -> str:
    try:
        payload = parse_payload(event)
    except (ProtocolError, ValidationError):
        return ""
    match payload:
        case RunPlanned(sections=sections, fact_count=fact_count):
            return f"{len(sections)} sections, {fact_count} facts"
        case SectionAssigned(section=section):
            return section.section_id
        case SectionDrafted() | SectionRevisionRequested() | SectionApproved():
            return f"{payload.section_id} v{payload.version} round {payload.round}"
        case AgentFailed(step=step, error=error):
            return f"{step}: {error}"
        case LLMCalled(task=task, model=model, seconds=seconds, ok=ok):
            tokens = f"{payload.prompt_tokens or 0}+{payload.completion_tokens or 0} tokens"
            tries = f"{payload.attempts} attempt{'s' if payload.attempts != 1 else ''}"
            failed = "" if ok else ", failed"
            return f"{task} on {model}: {seconds:.3f} s, {tries}, {tokens}{failed}"
        case _:
            return ""
