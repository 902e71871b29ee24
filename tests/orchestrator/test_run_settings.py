"""A run's agents run with the run's settings, handed over whole: not rebuilt from environment
variables, and the same for an agent restarted by the supervisor."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from pydantic import SecretStr

from agentmem.agents.llm_choice import uses_stub
from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.orchestrator.launcher import AgentLauncher
from agentmem.orchestrator.lifecycle import run_report
from agentmem.orchestrator.progress import Progress
from agentmem.orchestrator.sources import load_sources
from agentmem.orchestrator.supervisor import AgentSpec, Supervisor
from agentmem.protocol.roles import Role
from tests.orchestrator.runs import SOURCES

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

DEAD_ENDPOINT = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


def run_settings(servers: ServerUrls, tmp_path: Path, **values: Any) -> Settings:
    """Settings given in code, as a library caller or a CLI flag gives them."""
    return Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        data_dir=str(tmp_path / "data"),
        reports_dir=str(tmp_path / "reports"),
        **values,
    )


def without_server_urls() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}


async def ready_lines(log: Path, count: int) -> None:
    """Return once ``log`` says ``ready on run`` ``count`` times (one per process)."""
    path = anyio.Path(log)
    with anyio.fail_after(90):
        while not await path.exists() or (await path.read_bytes()).count(b"ready on run") < count:
            await anyio.sleep(0.05)


async def test_a_runs_agents_use_its_settings_even_where_the_environment_differs(
    servers: ServerUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is given no LLM endpoint (so, the stub) while the environment names one: its
    agents use the stub too, and the run completes, instead of calling that endpoint."""
    monkeypatch.setenv("OPENAI_BASE_URL", DEAD_ENDPOINT)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = run_settings(
        servers,
        tmp_path,
        openai_base_url=None,
        llm="auto",
        llm_max_attempts=1,
        run_timeout_seconds=120,
    )
    assert uses_stub(settings)

    result = await run_report(
        settings,
        run_id=f"settings-{uuid.uuid4().hex[:8]}",
        topic="Shared memory for agents",
        sources=load_sources(SOURCES),
        writers=1,
        progress=Progress(None, quiet=True),
    )

    assert result.state.done
    assert result.report_path.exists()


async def test_a_forked_agent_runs_with_the_settings_it_is_given_not_its_environment(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """A zygote whose environment names no servers forks an agent that reaches them: the
    server URLs come in the agent's settings."""
    log = tmp_path / "writer-1.log"
    settings = run_settings(servers, tmp_path, llm="stub")
    with AgentLauncher.start(without_server_urls()) as launcher:
        child = await launcher.launch(Role.WRITER, f"fork-{uuid.uuid4().hex[:8]}", 1, settings, log)
        await ready_lines(log, 1)
        child.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await child.wait() == 0
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() not in log.read_text()  # never logged


async def test_an_agent_started_first_and_killed_is_forked_again_with_the_runs_settings(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """The researcher (started before any other agent) is SIGKILLed: the supervisor starts it
    again by the same path, forked from the zygote with the run's settings (server URLs its
    environment lacks, a short lease), and it gets ready again."""
    settings = run_settings(servers, tmp_path, llm="stub", lock_ttl_seconds=2)
    logs = tmp_path / "logs"
    with AgentLauncher.start(without_server_urls()) as launcher:
        supervisor = Supervisor(
            f"restart-{uuid.uuid4().hex[:8]}", settings, logs, launcher=launcher, first_backoff=0.01
        )
        async with supervisor:
            supervisor.start([AgentSpec(Role.RESEARCH, 1)])
            await ready_lines(logs / "research-1.log", 1)
            first = supervisor.pids()["research-1"]
            os.kill(first, signal.SIGKILL)
            await ready_lines(logs / "research-1.log", 2)
            second = supervisor.pids()["research-1"]
            assert second != first
            assert psutil.Process(second).ppid() == launcher.pid
            supervisor.stop()
            with anyio.fail_after(30):
                await supervisor.wait()
    assert [(r.agent, r.exit_code) for r in supervisor.restart_log] == [
        ("research-1", -signal.SIGKILL)
    ]


async def test_an_agent_started_as_a_new_interpreter_reads_its_settings_on_stdin(
    servers: ServerUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a zygote the supervisor starts ``python -m agentmem.agents``: it runs with the
    settings written to its stdin, not the dead server URLs its environment names."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    settings = run_settings(servers, tmp_path, llm="stub")
    logs = tmp_path / "logs"
    async with Supervisor(f"stdin-{uuid.uuid4().hex[:8]}", settings, logs) as supervisor:
        supervisor.start([AgentSpec(Role.REVIEW, 1)])
        await ready_lines(logs / "review-1.log", 1)
        supervisor.stop()
        with anyio.fail_after(30):
            await supervisor.wait()
    assert supervisor.restart_log == []
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() not in (logs / "review-1.log").read_text()
