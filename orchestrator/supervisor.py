"""Launch agent processes and keep them running until the run is over.

Each agent is a separate OS process, ``python -m agentmem.agents <role> --run-id R --instance N``,
with its settings in its environment and its JSON log lines in a file of its own. Given an
:class:`~orchestrator.launcher.AgentLauncher`, the supervisor forks each agent from its zygote
(the same agent, without a new interpreter's imports; the orchestrator does so); without one
it starts that command line. A process
that exits with an error is restarted with a growing backoff, a bounded number of times; one
that exits 0 stopped by itself (it saw the run end) and is not restarted. A restarted agent
waits for its previous process's instance lease to expire (see :mod:`agents.instance`).
When the supervisor is cancelled (the run finished, failed, timed out, or the user pressed
Ctrl-C) every process gets SIGTERM, a grace period, then SIGKILL. Agents also get SIGTERM
if the orchestrator itself dies, so none outlives it (a started agent asks the kernel; a
forked one watches the launcher's life pipe). A zygote that dies takes no agent with it, and
the launcher starts a new one for the next agent (see :mod:`orchestrator.launcher`).

Two calls let the caller overlap its own work with the agents' start and stop:
:meth:`Supervisor.start_early` starts the agents a run needs first before :meth:`run` is
given them (they connect while the caller does), and :meth:`Supervisor.stop` sends every
agent SIGTERM without waiting (the run writes its report while they exit).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio

from agentmem.memory import AgentMemoryError
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
    """Runs agent processes for one run; cancel :meth:`run` to stop them all."""

    def __init__(
        self,
        run_id: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        max_restarts: int = 5,
        first_backoff: float = 0.5,
        notify: Callable[[str], None] = lambda message: None,
        launcher: AgentLauncher | None = None,
    ) -> None:
        self.run_id = run_id
        self.env = dict(env)
        self.log_dir = log_dir
        self.max_restarts = max_restarts
        self.first_backoff = first_backoff
        self.notify = notify
        self.launcher = launcher
        self.processes: dict[str, AgentProcess] = {}
        self.restarts: dict[str, int] = {}
        self.restart_log: list[Restart] = []
        self._early: dict[str, AgentProcess] = {}  # started by start_early, not yet run
        self._stopping = False  # stop() was called: no restarts
        self._signalled: set[int] = set()  # pids stop() sent SIGTERM

    async def start_early(self, specs: Sequence[AgentSpec]) -> dict[str, int]:
        """Start these agents' first processes now, before :meth:`run` is given them; returns
        their pids.

        For the agents a run needs first: they connect and claim their instance while the
        caller does its own setup, and :meth:`run` adopts them as they are. Those that
        :meth:`run` never adopts are stopped by :meth:`stop_early`; call it on the way out.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            if spec.name not in self._early:
                self._early[spec.name] = await self._start(spec)
        return {spec.name: self._early[spec.name].pid for spec in specs}

    async def stop_early(self) -> None:
        """Stop the processes :meth:`start_early` started that :meth:`run` did not adopt."""
        early, self._early = list(self._early.values()), {}
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for process in early:
                    tg.start_soon(_terminate, process)

    def stop(self) -> None:
        """Tell every agent to stop (SIGTERM) now, without waiting; none is restarted from now
        on. :meth:`run` returns once they have exited; cancel it to give those still running
        the grace period, then SIGKILL. For a caller with work to do while the agents stop."""
        self._stopping = True
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
            self._signalled.add(process.pid)

    async def run(self, specs: Sequence[AgentSpec]) -> None:
        """Start every agent and keep each one alive; returns only by cancellation or error
        (or, after :meth:`stop`, once every agent has exited)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(self._keep_alive, spec)

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
        ]

    async def _keep_alive(self, spec: AgentSpec) -> None:
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
        """Run the agent until it exits (returns its code) or the supervisor is cancelled."""
        process = self._early.pop(spec.name, None) or await self._start(spec)
        self.processes[spec.name] = process
        try:
            return await process.wait()
        finally:
            with anyio.CancelScope(shield=True):
                # one started while stop() ran was not signalled by it: it gets SIGTERM here
                await _terminate(process, signalled=process.pid in self._signalled)

    async def _start(self, spec: AgentSpec) -> AgentProcess:
        """A new process for ``spec``: forked from the launcher's zygote, or a new interpreter."""
        log_path = self.log_dir / f"{spec.name}.log"
        if self.launcher is not None:
            return await self.launcher.launch(
                spec.role, self.run_id, spec.instance, self.env, log_path
            )
        with log_path.open("ab") as log:
            return await anyio.open_process(
                self.command(spec),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
            )

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
