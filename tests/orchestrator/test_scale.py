"""Many agents per role, and agents that join a run from elsewhere (issue 10, scale-out).

Real CLI, agent processes and servers: several research, writing and review agents share a
run through their consumer groups; an agent joined by hand stops when the run completes; a
second process with the same role and instance is refused; a SIGKILLed agent's restart
takes its instance lease again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import (
    ROOT,
    agent_processes,
    assert_run_is_whole,
    cli_env,
    default_env,
    finish,
    outcome,
    start_cli,
    wait_for_event,
    wait_until_gone,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

QUICK_LEASE = {"AGENTMEM_LOCK_TTL_SECONDS": "2", "AGENTMEM_RECLAIM_IDLE_MS": "1500"}


def run_id() -> str:
    return f"scale-{uuid.uuid4().hex[:8]}"


def join(
    env: dict[str, str], cwd: Path, role: str, rid: str, instance: int
) -> subprocess.Popen[str]:
    """``agentmem agent ROLE --run RID --instance N``, started in another directory."""
    command = ["agent", role, "--run", rid, "--instance", str(instance)]
    return subprocess.Popen(
        [sys.executable, "-m", "agentmem.cli.main", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
    )


def messages(stderr: str) -> list[str]:
    """The ``msg`` of each JSON log line an agent wrote."""
    return [json.loads(line)["msg"] for line in stderr.splitlines() if line.startswith("{")]


async def test_two_agents_of_each_role_complete_a_whole_run(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """2 researchers, 2 writers and 2 reviewers complete a run, extracting per source, whole."""
    rid = run_id()
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    args = ("--researchers", "2", "--writers", "2", "--reviewers", "2")
    code, stdout, stderr = finish(start_cli(env, "run", "--run-id", rid, *args))

    assert code == 0, stderr[-3000:]
    out = outcome(stdout)
    await assert_run_is_whole(servers.redis_url, servers.database_url, rid, out)
    types = [e["event_type"] for e in out.record["events"]]
    assert types.count("source.assigned") == len(out.record["sections"])  # one per source
    logs = tmp_path / "data" / "logs" / rid
    for agent in ("research-2", "writer-2", "review-2"):
        assert f"holding instance {agent}" in (logs / f"{agent}.log").read_text()
    assert wait_until_gone(rid) == []


async def test_a_joined_agent_stops_by_itself_after_the_run_completes(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """An agent started by hand in another directory exits 0 once run.completed is out."""
    rid = run_id()
    env = cli_env(servers.redis_url, servers.database_url, tmp_path, **QUICK_LEASE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    joined = join(env, elsewhere, "writer", rid, 2)
    code, stdout, stderr = finish(start_cli(env, "run", "--run-id", rid))
    assert code == 0, stderr[-3000:]

    joined_code, _, joined_err = finish(joined, timeout=60)
    assert joined_code == 0, joined_err[-3000:]
    assert messages(joined_err)[-1].startswith(f"run {rid} completed")
    await assert_run_is_whole(servers.redis_url, servers.database_url, rid, outcome(stdout))


def test_an_agent_joined_with_no_server_urls_uses_the_runs_local_servers(tmp_path: Path) -> None:
    """With REDIS_URL/DATABASE_URL unset, a joined agent and the run meet on the checkout's
    shared local servers: the joined writer sees the run complete and exits 0."""
    rid = run_id()
    env = default_env(tmp_path, **QUICK_LEASE)
    code, _, stderr = finish(start_cli(env, "servers", "up"), timeout=60)
    assert code == 0, stderr
    try:
        joined = join(env, tmp_path, "writer", rid, 2)
        code, _, stderr = finish(start_cli(env, "run", "--run-id", rid))
        assert code == 0, stderr[-3000:]

        joined_code, _, joined_err = finish(joined, timeout=60)
        assert joined_code == 0, joined_err[-3000:]
        assert messages(joined_err)[-1].startswith(f"run {rid} completed")
    finally:
        finish(start_cli(env, "servers", "down", "--force"), timeout=60)


async def test_a_second_process_with_the_same_instance_is_refused(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """writer-1 started twice: the second exits 1 with one line naming the first as holder."""
    rid = run_id()
    env = cli_env(servers.redis_url, servers.database_url, tmp_path, **QUICK_LEASE)
    first = join(env, tmp_path, "writer", rid, 1)
    try:
        await wait_for_log(first, "holding instance writer-1")
        second = join(env, tmp_path, "writer", rid, 1)
        code, _, stderr = finish(second, timeout=60)

        assert code == 1
        [error] = [m for m in messages(stderr) if m.startswith("stopped")]
        assert "writer-1@" in error
        assert f":{first.pid}" in error
        assert "already running" in error
    finally:
        first.send_signal(signal.SIGTERM)
        assert finish(first, timeout=30)[0] == 0


async def test_a_killed_agent_restarted_by_the_supervisor_takes_its_instance_again(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """SIGKILL of writer-1: its restart waits for the old lease, holds it, and the run is whole."""
    rid = run_id()
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_STUB_DELAY_SECONDS="0.2",
        **QUICK_LEASE,
    )
    process = start_cli(env, "run", "--run-id", rid)
    await wait_for_event(servers.redis_url, rid, lambda e: e.event_type == "section.assigned")
    [writer] = agent_processes(rid, "writer")
    writer.send_signal(signal.SIGKILL)

    code, stdout, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    assert "writer-1 exited with code -9; restarting" in stdout
    log = tmp_path / "data" / "logs" / rid / "writer-1.log"
    holders = [m for m in messages(log.read_text()) if m.startswith("holding instance writer-1")]
    assert len(holders) == 2
    assert holders[0] != holders[1]  # two processes, two pids
    await assert_run_is_whole(servers.redis_url, servers.database_url, rid, outcome(stdout))
    assert wait_until_gone(rid) == []


async def wait_for_log(process: subprocess.Popen[str], text: str, within: float = 30) -> None:
    """Read the process's stderr until a line contains ``text``."""
    assert process.stderr is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if text in line:
            return
        if not line and process.poll() is not None:
            break
    msg = f"the process never logged {text!r}"
    raise AssertionError(msg)
