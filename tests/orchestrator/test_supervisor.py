"""The supervisor restarts an agent that exits, with backoff, and gives up after a bound; every
agent it starts, early or late, has that one lifecycle."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from agentmem.agents.settings import Settings
from agentmem.memory import AgentStatus, RedisAgentMemory
from agentmem.memory.connections import RedisClient
from agentmem.orchestrator.lifecycle import agent_specs, start_in_stages
from agentmem.orchestrator.supervisor import AgentCrashedError, AgentSpec, Supervisor
from agentmem.protocol.roles import Role

pytestmark = pytest.mark.anyio

SETTINGS = Settings(llm="stub")


async def keep(supervisor: Supervisor, specs: Sequence[AgentSpec]) -> None:
    """Enter ``supervisor`` and start ``specs``; return only by its error (or cancellation)."""
    async with supervisor:
        supervisor.start(specs)
        await anyio.sleep_forever()


class Crashing(Supervisor):
    """A supervisor whose agents are a one-line program that writes a line and exits 3."""

    def command(self, spec: AgentSpec) -> list[str]:
        return [sys.executable, "-c", "import sys; print('started', flush=True); sys.exit(3)"]


async def test_an_agent_that_keeps_exiting_is_restarted_then_reported(tmp_path: Path) -> None:
    """Each exit is announced and followed by a restart, until the bound makes it an error."""
    notes: list[str] = []
    supervisor = Crashing(
        "run-1", SETTINGS, tmp_path, max_restarts=3, first_backoff=0.01, notify=notes.append
    )

    with pytest.raises(ExceptionGroup) as caught, anyio.fail_after(30):
        await keep(supervisor, [AgentSpec(Role.WRITER, 2)])

    [error] = caught.value.exceptions
    assert isinstance(error, AgentCrashedError)
    assert "writer-2 exited 4 times (last exit code 3)" in str(error)
    assert notes == [
        f"writer-2 exited with code 3; restarting in {d:.1f} s" for d in (0.01, 0.02, 0.04)
    ]
    assert (tmp_path / "writer-2.log").read_text().count("started") == 4


class Recording(Supervisor):
    """A supervisor that notes which agents it was asked to start, and starts none."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__("run-1", SETTINGS, tmp_path)
        self.started: list[str] = []
        self._changed = anyio.Event()

    def start(self, specs: Sequence[AgentSpec]) -> None:
        self.started += [spec.name for spec in specs if spec.name not in self.started]
        self._changed.set()

    async def until_started(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.started) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


class Watched(RedisAgentMemory):
    """Memory that counts the status reads finding no status, so a test can wait for them."""

    def __init__(self, client: RedisClient, namespace: str) -> None:
        super().__init__(client, namespace)
        self.misses = 0
        self._missed = anyio.Event()

    async def get_agent_status(self, agent_id: str) -> AgentStatus | None:
        status = await super().get_agent_status(agent_id)
        if status is None:
            self.misses += 1
            self._missed.set()
        return status

    async def until_missed(self, count: int) -> None:
        with anyio.fail_after(5):
            while self.misses < count:
                self._missed = anyio.Event()
                await self._missed.wait()


async def test_writers_and_reviewers_start_once_the_researcher_is_ready(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """The researcher starts first; the others only once its status shows it is ready."""
    memory = Watched(redis_client, namespace)
    supervisor = Recording(tmp_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(start_in_stages, supervisor, memory, agent_specs(2, 1))
        await memory.until_missed(2)  # the stager looked, found no status, and looked again
        assert supervisor.started == ["research-1"]
        await memory.set_agent_status("research-1", "idle", "waiting for work")
        await supervisor.until_started(4)
        tg.cancel_scope.cancel()
    assert supervisor.started == ["research-1", "writer-1", "writer-2", "review-1"]


async def test_the_others_start_anyway_when_the_researcher_is_slow_to_be_ready(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """A researcher that never reports ready delays the others by the bound, no longer."""
    supervisor = Recording(tmp_path)
    memory = RedisAgentMemory(redis_client, namespace)
    async with anyio.create_task_group() as tg:
        tg.start_soon(start_in_stages, supervisor, memory, agent_specs(), 0.2)
        await supervisor.until_started(3)
        tg.cancel_scope.cancel()
    assert supervisor.started == ["research-1", "writer-1", "review-1"]


class Counting(Supervisor):
    """A supervisor whose agents are a one-line program that writes a line and waits."""

    def command(self, spec: AgentSpec) -> list[str]:
        return [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]


async def test_an_agent_started_before_the_others_is_restarted_by_the_same_path(
    tmp_path: Path,
) -> None:
    """An agent started first (before the run's memory is open) that exits is restarted at
    once, with the same backoff and bound as any agent, not left dead until a later stage."""
    notes: list[str] = []
    supervisor = Crashing("run-1", SETTINGS, tmp_path, first_backoff=0.01, notify=notes.append)
    with pytest.raises(ExceptionGroup) as caught, anyio.fail_after(30):
        await keep(supervisor, [AgentSpec(Role.RESEARCH, 1)])  # nothing else is started, ever
    [error] = caught.value.exceptions
    assert "research-1 exited 6 times" in str(error)
    assert len(notes) == 5
    assert [r.agent for r in supervisor.restart_log] == ["research-1"] * 5


async def test_an_agent_started_again_in_a_later_stage_is_one_process(tmp_path: Path) -> None:
    """start() of an agent already started keeps its process: one process per agent, not two."""
    async with Counting("run-1", SETTINGS, tmp_path) as supervisor:
        spec = AgentSpec(Role.RESEARCH, 1)
        supervisor.start([spec])
        await anyio.wait_all_tasks_blocked()
        first = supervisor.pids()
        supervisor.start([spec, AgentSpec(Role.WRITER, 1)])
        await anyio.wait_all_tasks_blocked()
        assert supervisor.pids()[spec.name] == first[spec.name]
        assert set(supervisor.pids()) == {"research-1", "writer-1"}
    assert all(p.returncode is not None for p in supervisor.processes.values())


async def test_leaving_the_supervisor_stops_every_agent_it_started(tmp_path: Path) -> None:
    """Agents started before a run failed at its start are stopped and reaped on the way out."""
    pids: dict[str, int] = {}

    async def fail_at_the_start() -> None:
        async with Counting("run-1", SETTINGS, tmp_path) as supervisor:
            supervisor.start([AgentSpec(Role.RESEARCH, 1), AgentSpec(Role.RESEARCH, 2)])
            await anyio.wait_all_tasks_blocked()
            pids.update(supervisor.pids())
            msg = "the run failed"
            raise RuntimeError(msg)

    with pytest.raises(ExceptionGroup, match="unhandled"), anyio.fail_after(30):
        await fail_at_the_start()
    assert len(set(pids.values())) == 2
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: gone


async def test_stop_ends_every_agent_without_restarting_any(tmp_path: Path) -> None:
    """After stop(), wait() returns once the agents have exited, and none was restarted."""
    notes: list[str] = []
    supervisor = Counting("run-1", SETTINGS, tmp_path, first_backoff=0.01, notify=notes.append)
    async with supervisor:
        supervisor.start([AgentSpec(Role.WRITER, 1), AgentSpec(Role.REVIEW, 1)])
        await anyio.wait_all_tasks_blocked()
        supervisor.stop()
        with anyio.fail_after(30):
            await supervisor.wait()
        supervisor.start([AgentSpec(Role.WRITER, 2)])  # after stop(): nothing new is started
    assert notes == []
    assert supervisor.restart_log == []
    assert set(supervisor.processes) == {"writer-1", "review-1"}
    assert all(p.returncode is not None for p in supervisor.processes.values())
