"""Workers stop without losing work: SIGTERM drains and hands back, SIGKILL is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory import MemoryConfig
from agentmem.memory.connections import connect_redis
from agentmem.memory.work_queue import WorkQueue
from tests.orchestrator.runs import assert_run_is_whole, cli_env, outcome
from tests.service.pool import Pool
from tests.service.test_pool import cli

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


async def _busy_writer(redis_url: str, pids: set[int]) -> int:
    """The pid of one of ``pids`` (writer workers) that holds a handoff now."""
    client = await connect_redis(MemoryConfig(redis_url=redis_url))
    try:
        queue = WorkQueue(client, "writer")
        with anyio.fail_after(120):
            while True:
                for worker in await queue.workers():
                    if worker.busy and worker.pid in pids:
                        return worker.pid
                await anyio.sleep(0.05)
    finally:
        await client.aclose()


async def _stop_a_busy_writer_and_finish(
    servers: ServerUrls, tmp_path: Path, namespace: str, *, sig: signal.Signals, **extra: str
) -> tuple[Pool, subprocess.Popen[bytes], subprocess.CompletedProcess[str], str]:
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_STUB_DELAY_SECONDS="0.4",
        **extra,
    )
    pool = Pool(env, tmp_path / "workers")
    for role in ("research", "review", "coordinator"):
        pool.start(role)
    writers = [pool.start("writer"), pool.start("writer")]
    try:
        run_id = f"{namespace}-{sig.name.lower()}"
        submitted = cli(env, "submit", "--tenant", f"t-{namespace}", "--run-id", run_id)
        assert submitted.returncode == 0, submitted.stderr
        pid = await _busy_writer(servers.redis_url, {w.pid for w in writers})
        victim = next(w for w in writers if w.pid == pid)
        os.kill(pid, sig)
        victim.wait(timeout=60)
        waited = cli(env, "wait", run_id, "--timeout", "100", timeout=130)
        return pool, victim, waited, run_id
    finally:
        pool.stop()


async def test_sigterm_drains_a_worker_and_hands_back_its_work_at_once(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A SIGTERMed writer exits 0 and hands back what it held; another takes it long before
    the reclaim timeout (120 s here), and the run is whole: nothing lost, nothing twice."""
    pool, victim, waited, run_id = await _stop_a_busy_writer_and_finish(
        servers,
        tmp_path,
        namespace,
        sig=signal.SIGTERM,
        AGENTMEM_RECLAIM_IDLE_MS="120000",
        AGENTMEM_DRAIN_GRACE_SECONDS="0",
    )
    assert victim.returncode == 0, pool.logs()
    assert waited.returncode == 0, waited.stderr + pool.logs()
    assert "handed back" in pool.logs()
    await assert_run_is_whole(
        servers.redis_url, servers.database_url, run_id, outcome(waited.stdout)
    )


async def test_a_sigkilled_workers_work_is_taken_over_after_the_reclaim_timeout(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A SIGKILLed writer's tickets and handoffs are reclaimed by the other writer; the run
    is whole: nothing lost, nothing twice."""
    pool, victim, waited, run_id = await _stop_a_busy_writer_and_finish(
        servers, tmp_path, namespace, sig=signal.SIGKILL, AGENTMEM_RECLAIM_IDLE_MS="2000"
    )
    assert victim.returncode == -signal.SIGKILL
    assert waited.returncode == 0, waited.stderr + pool.logs()
    await assert_run_is_whole(
        servers.redis_url, servers.database_url, run_id, outcome(waited.stdout)
    )
