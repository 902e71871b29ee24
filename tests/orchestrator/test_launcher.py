"""Agents forked from the zygote are processes of their own that tools find by command line."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import anyio
import psutil
import pytest
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.chaos.faults import agent_identity
from agentmem.devservers import ServerUrls
from agentmem.orchestrator.launcher import AgentChild, AgentLauncher
from agentmem.protocol.roles import Role

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def agent_settings(servers: ServerUrls, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        data_dir=str(tmp_path / "data"),
        llm="stub",
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_ready(log: Path) -> None:
    path = anyio.Path(log)
    with anyio.fail_after(60):
        while not await path.exists() or b"ready on run" not in await path.read_bytes():
            await anyio.sleep(0.05)


async def test_a_forked_agent_runs_under_its_own_command_line_until_killed(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """It gets ready in a process of its own named like ``python -m agents``; SIGKILL shows."""
    rid = f"fork-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "writer-2.log"
    with AgentLauncher.start() as launcher:
        child = await launcher.launch(Role.WRITER, rid, 2, agent_settings(servers, tmp_path), log)
        await wait_ready(log)
        process = psutil.Process(child.pid)
        assert agent_identity(process.cmdline()) == ("writer", rid, 2)
        assert process.ppid() == launcher.pid
        assert child.pid not in {os.getpid(), launcher.pid}
        child.send_signal(signal.SIGKILL)
        with anyio.fail_after(30):
            assert await child.wait() == -signal.SIGKILL


async def test_a_forked_agent_that_cannot_start_reports_its_exit_code_and_why(
    tmp_path: Path,
) -> None:
    """Without server URLs in the settings it is given, it exits 1 and its log says why."""
    settings = Settings(redis_url=None, database_url=None, llm="stub")
    log = tmp_path / "review-1.log"
    with AgentLauncher.start() as launcher:
        child = await launcher.launch(Role.REVIEW, "run-x", 1, settings, log)
        with anyio.fail_after(60):
            assert await child.wait() == 1
    assert "REDIS_URL and DATABASE_URL must both be set" in log.read_text()


async def test_closing_the_launcher_stops_the_agents_it_forked(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """The zygote stops when its owner closes it; its agents get SIGTERM (the life pipe ends)
    and stop cleanly."""
    rid = f"fork-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "research-1.log"
    children: list[AgentChild] = []
    with AgentLauncher.start() as launcher:
        children.append(
            await launcher.launch(Role.RESEARCH, rid, 1, agent_settings(servers, tmp_path), log)
        )
        await wait_ready(log)
    pid = children[0].pid
    with anyio.fail_after(30):
        assert await children[0].wait() == 0  # stopped cleanly, reaped here: its zygote is gone
    with anyio.fail_after(30):
        while not gone(pid):
            await anyio.sleep(0.05)
    assert "stopping" in log.read_text()


async def test_agents_outlive_a_killed_zygote_and_the_next_comes_from_a_new_one(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """SIGKILL of the zygote: its agent goes on (re-parented to this process), the next agent
    is forked from a new zygote, and each agent's exit code is still known."""
    rid = f"fork-{uuid.uuid4().hex[:8]}"
    settings = agent_settings(servers, tmp_path)
    with AgentLauncher.start() as launcher:
        first = await launcher.launch(Role.WRITER, rid, 1, settings, tmp_path / "writer-1.log")
        await wait_ready(tmp_path / "writer-1.log")
        zygote = launcher.pid
        os.kill(zygote, signal.SIGKILL)
        with anyio.fail_after(30):
            while psutil.Process(first.pid).ppid() != os.getpid():
                await anyio.sleep(0.05)
        assert psutil.Process(first.pid).status() != psutil.STATUS_ZOMBIE  # it survived

        second = await launcher.launch(Role.REVIEW, rid, 1, settings, tmp_path / "review-1.log")
        await wait_ready(tmp_path / "review-1.log")
        assert launcher.pid != zygote
        assert launcher.restarts == 1
        assert psutil.Process(second.pid).ppid() == launcher.pid

        first.send_signal(signal.SIGKILL)
        with anyio.fail_after(30):
            assert await first.wait() == -signal.SIGKILL
        assert gone(first.pid)
    with anyio.fail_after(30):
        assert await second.wait() == 0  # the launcher closed: SIGTERM, a clean stop
