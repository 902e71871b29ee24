"""Launch agent processes and keep them running until the run is over.

Each agent is a separate OS process, ``python -m agentmem.agents <role> --run-id R --instance N``,
with its JSON log lines in a file of its own, running with the run's
:class:`~agents.settings.Settings` (handed over whole: never rebuilt from environment
variables). Given an :class:`~orchestrator.launcher.AgentLauncher`, the supervisor forks each
agent from its zygote (the same agent, without a new interpreter's imports; the orchestrator
does so) and the settings go in the launch request; without one it starts that command line
and writes the settings to its standard input.

A :class:`Supervisor` is entered once per run (``async with``) and owns every process it starts
until it is left. Each agent has one lifecycle, whenever :meth:`Supervisor.start` is given it
(the researchers before the run's memory is even open, so that they connect while the
orchestrator does; the others later): it is started, watched, and, when it exits with an
error, started again by the same path with a growing backoff, a bounded number of times. One
that exits 0 stopped by itself (it saw the run end) and is not restarted. A restarted agent
waits for its previous process's instance lease to expire (see :mod:`agents.instance`).
:meth:`Supervisor.stop` sends every agent SIGTERM without waiting (the run writes its report
while they exit) and ends the restarts; leaving the supervisor gives each process still running
SIGTERM, a grace period, then SIGKILL, whether the run finished, failed, timed out, or the user
pressed Ctrl-C. Agents also get SIGTERM if the orchestrator itself dies, so none outlives it (a
started agent asks the kernel; a forked one watches the launcher's life pipe). A zygote that
dies takes no agent with it, and the launcher starts a new one for the next agent (see
:mod:`orchestrator.launcher`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import anyio
import anyio.abc

from agentmem.agents.settings import Settings
from agentmem.memory import AgentMemoryError, telemetry
from agentmem.orchestrator.launcher import AgentLauncher
from agentmem.protocol.roles import Role

logger = logging.getLogger(__name__)

GRACE_SECONDS = 5.0


class AgentProcess(Protocol):
    """What the supervisor needs of an agent process (a subprocess, or a zygote's fork)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signal: signal.Signals, /) -> None: ...

    def kill(self) -> None: ...


class AgentCrashedError(AgentMemoryError, RuntimeError):
    """An agent kept exiting and ran out of restarts."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    role: Role
    instance: int = 1

    @property
    def name(self) -> str:
        return f"{self.role}-{self.instance}"


@dataclass(frozen=True, slots=True)
class Restart:
    """An agent process the supervisor restarted: when, which agent, and how it had exited."""

    at: datetime
    agent: str
    exit_code: int


class Supervisor:
    """The agent processes of one run: ``async with Supervisor(...) as supervisor:``, then
    :meth:`start` them; leaving stops every one still running."""

    def __init__(
        self,
        run_id: str,
        settings: Settings,
        log_dir: Path,
        *,
        max_restarts: int = 5,
        first_backoff: float = 0.5,
        notify: Callable[[str], None] = lambda message: None,
        launcher: AgentLauncher | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.settings = settings
        self.log_dir = log_dir
        self.max_restarts = max_restarts
        self.first_backoff = first_backoff
        self.notify = notify
        self.launcher = launcher
        self.traceparent = traceparent  # the run's span: each agent's parent
        self.processes: dict[str, AgentProcess] = {}
        self.restarts: dict[str, int] = {}
        self.restart_log: list[Restart] = []
        self._agents: anyio.abc.TaskGroup | None = None  # one task per agent, while entered
        self._kept: set[str] = set()  # agents given to start(), each kept by one task
        self._running = 0  # of those tasks, the ones not returned yet
        self._all_returned = anyio.Event()
        self._stopping = False  # stop() was called: no restarts
        self._signalled: set[int] = set()  # pids stop() sent SIGTERM

    async def __aenter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        agents = anyio.create_task_group()
        await agents.__aenter__()
        self._agents = agents
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop every agent still running (SIGTERM, the grace period, SIGKILL); an agent's
        error (:class:`AgentCrashedError`) comes out here, in the task group's error."""
        agents, self._agents = self._agents, None
        if agents is None:  # pragma: no cover - entered once
            msg = "Supervisor exited without being entered"
            raise RuntimeError(msg)
        agents.cancel_scope.cancel()
        return await agents.__aexit__(exc_type, exc, tb)

    def start(self, specs: Sequence[AgentSpec]) -> None:
        """Start these agents and keep each alive until the supervisor is left (or
        :meth:`stop`); an agent already started is left as it is. Returns at once."""
        if self._agents is None:
            msg = "start() needs the supervisor entered: async with Supervisor(...)"
            raise RuntimeError(msg)
        for spec in specs:
            if spec.name not in self._kept and not self._stopping:
                self._kept.add(spec.name)
                if not self._running:
                    self._all_returned = anyio.Event()
                self._running += 1
                self._agents.start_soon(self._keep_alive, spec, name=spec.name)

    def stop(self) -> None:
        """Tell every agent to stop (SIGTERM) now, without waiting; none is restarted or
        started from now on. :meth:`wait` returns once they have exited; leaving the
        supervisor gives those still running the grace period, then SIGKILL. For a caller
        with work to do while the agents stop."""
        self._stopping = True
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
            self._signalled.add(process.pid)

    async def wait(self) -> None:
        """Return once no agent is kept any more: each exited 0, or exited after
        :meth:`stop`. (An agent that ran out of restarts raises on leaving instead.)"""
        if self._running:
            await self._all_returned.wait()

    def command(self, spec: AgentSpec) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agentmem.agents",
            spec.role.value,
            "--run-id",
            self.run_id,
            "--instance",
            str(spec.instance),
            "--supervised",
            "--settings-from-stdin",
        ]

    async def _keep_alive(self, spec: AgentSpec) -> None:
        """The one lifecycle of an agent: start it, wait for its exit, start it again."""
        try:
            await self._restarting(spec)
        finally:
            self._running -= 1
            if not self._running:
                self._all_returned.set()

    async def _restarting(self, spec: AgentSpec) -> None:
        restarts = 0
        while not self._stopping:
            code = await self._run_once(spec)
            if code == 0 or self._stopping:
                logger.info("%s stopped (its run is over)", spec.name)
                return
            restarts += 1
            self.restarts[spec.name] = restarts
            if restarts > self.max_restarts:
                msg = (
                    f"agent {spec.name} exited {restarts} times (last exit code {code}); "
                    f"see its log in {self.log_dir / (spec.name + '.log')}"
                )
                raise AgentCrashedError(msg)
            delay = min(self.first_backoff * 2 ** (restarts - 1), 10.0)
            self.restart_log.append(Restart(datetime.now(UTC), spec.name, code))
            self.notify(f"{spec.name} exited with code {code}; restarting in {delay:.1f} s")
            logger.warning("%s exited with code %s; restart %d", spec.name, code, restarts)
            await anyio.sleep(delay)

    async def _run_once(self, spec: AgentSpec) -> int:
        """Run the agent until it exits (returns its code) or the supervisor is left."""
        process = await self._start(spec)
        self.processes[spec.name] = process
        try:
            return await process.wait()
        finally:
            with anyio.CancelScope(shield=True):
                # one started while stop() ran was not signalled by it: it gets SIGTERM here
                await _terminate(process, signalled=process.pid in self._signalled)

    async def _start(self, spec: AgentSpec) -> AgentProcess:
        """A new process for ``spec``, with the run's settings: forked from the launcher's
        zygote (they go in the launch request), or a new interpreter (on its stdin)."""
        log_path = self.log_dir / f"{spec.name}.log"
        if self.launcher is not None:
            return await self.launcher.launch(
                spec.role,
                self.run_id,
                spec.instance,
                self.settings,
                log_path,
                traceparent=self.traceparent,
            )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop(telemetry.TRACEPARENT_ENV, None)
        if self.traceparent is not None:
            env[telemetry.TRACEPARENT_ENV] = self.traceparent
        with log_path.open("ab") as log:
            process = await anyio.open_process(
                self.command(spec), stdin=subprocess.PIPE, stdout=log, stderr=log, env=env
            )
        if process.stdin is not None:
            # a process that exits without reading them (a crash, a test's stand-in) is fine
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await process.stdin.send(self.settings.handoff_json().encode())
            await process.stdin.aclose()
        return process

    def pids(self) -> dict[str, int]:
        """The process id of each agent's current process."""
        return {name: p.pid for name, p in self.processes.items() if p.returncode is None}


async def _terminate(process: AgentProcess, *, signalled: bool = False) -> None:
    """SIGTERM (unless ``signalled`` already: a second one could cut its shutdown short),
    then SIGKILL if the process has not exited after the grace period."""
    if process.returncode is not None:
        return
    if not signalled:
        process.send_signal(signal.SIGTERM)
    with anyio.move_on_after(GRACE_SECONDS):
        await process.wait()
        return
    process.kill()
    await process.wait()
