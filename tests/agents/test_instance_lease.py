"""An agent whose instance lease is lost takes, hands off and acknowledges nothing until it
holds the lease again: another process may be acting as the same agent meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from agentmem.agents.instance import holder_id, instance_resource
from agentmem.devservers import ServerUrls
from agentmem.memory import AgentEvent, Delivery, MemoryConfig, open_memory
from agentmem.protocol.events import ROUTES, RUN_STREAM, EventType
from tests.orchestrator.runs import ROOT, cli_env

pytestmark = pytest.mark.anyio

TTL = 2  # the agent's lease, in seconds


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while text not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in {log.read_text()}"
        time.sleep(0.05)


def start_writer(run_id: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m agentmem.agents writer`` (instance 1) of ``run_id``, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentmem.agents",
                "writer",
                "--run-id",
                run_id,
                "--instance",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            cwd=ROOT,
        )


async def test_an_agent_that_lost_its_lease_while_stalled_takes_and_acks_nothing(
    servers: ServerUrls, namespace: str, tmp_path: Path
) -> None:
    """writer-1 is stopped until its lease expires; another holder takes the lease and a
    handoff arrives; resumed, writer-1 neither takes nor fails nor acks it, and exits once it
    cannot take the lease back."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    env["AGENTMEM_LOCK_TTL_SECONDS"] = str(TTL)
    log = tmp_path / "writer-1.log"
    agent = start_writer(namespace, env, log)
    try:
        await anyio.to_thread.run_sync(wait_for_line, log, "ready on run", agent, 60)
        os.kill(agent.pid, signal.SIGSTOP)
        config = MemoryConfig(servers.redis_url, servers.database_url)
        # the lease of a second process with the same agent id: granted once writer-1's expires
        resource, holder = instance_resource("writer-1"), holder_id("writer-1")
        async with (
            open_memory(config, namespace) as m,
            m.memory.lock(resource, holder, ttl_seconds=30, timeout=30),
        ):
            events = m.events(RUN_STREAM, routes=ROUTES, reclaim_idle_ms=100)
            # a handoff writer-1 would fail for good at once (a bad payload): dead-lettered
            # and acknowledged if it were taken
            bad = AgentEvent(
                event_type=EventType.SECTION_ASSIGNED, agent_id="test", payload={"x": 1}
            )
            await events.publish(bad)
            os.kill(agent.pid, signal.SIGCONT)
            code = await anyio.to_thread.run_sync(lambda: agent.wait(timeout=60))

            assert code == 1  # it could not take its lease back: another process has it
            text = log.read_text()
            assert "failed for good" not in text
            assert "already running" in text
            assert "lost the instance lease of writer-1" in text
            assert await events.dead_letters() == []
            logged = await events.read_events(count=100)
            assert [e.event_type for e in logged] == [EventType.SECTION_ASSIGNED]
            # the handoff is still there for the agent that holds the lease to take
            probe = events.group("writer", "writer-probe", route="writer")
            taken: list[Delivery] = []
            with anyio.fail_after(10):  # reclaimed once idle 100 ms, were it taken and pending
                while not taken:
                    taken = await probe.read(count=10, block_ms=100)
            assert [d.event.event_type for d in taken] == [EventType.SECTION_ASSIGNED]
    finally:
        if agent.poll() is None:
            os.kill(agent.pid, signal.SIGCONT)
            agent.kill()
            agent.wait()
