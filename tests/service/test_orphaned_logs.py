"""A killed worker's local log is sent by a worker started later on the same data dir, once."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory import MemoryConfig, path_part
from agentmem.memory.connections import connect_redis
from agentmem.memory.errors import StoreError
from agentmem.memory.events import _PUBLISH, EventStore
from agentmem.protocol.events import RUN_STREAM
from agentmem.service.routes import POOL_ROUTES
from tests.memory.blackhole import BlackholeProxy
from tests.memory.test_boundary import port_of, through_proxy, via
from tests.orchestrator.runs import assert_run_is_whole, cli_env, outcome
from tests.service.pool import Pool
from tests.service.test_pool import cli

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300), through_proxy]

# The script every publish goes out by: requests holding its sha never reach Redis.
PUBLISH_SHA = hashlib.sha1(_PUBLISH.encode()).hexdigest().encode()


def _logged(folder: Path) -> list[tuple[Path, int]]:
    """Each writer's local log in ``folder`` and how many writes it holds."""
    found = []
    for path in sorted(folder.glob("writer-*.db")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found.append((path, int(db.execute("SELECT count(*) FROM wal").fetchone()[0])))
        except sqlite3.Error:
            continue
        finally:
            db.close()
    return found


async def _acknowledged_with_writes_in_log(redis_url: str, run_id: str, folder: Path) -> Path:
    """The local log of a writer that acknowledged its handoffs (none is pending) while the
    writes they made are in that log."""
    client = await connect_redis(MemoryConfig(redis_url=redis_url))
    handoffs = EventStore(client, run_id, RUN_STREAM, routes=POOL_ROUTES).group(
        "writer", "observer", route="writer"
    )
    try:
        with anyio.fail_after(120):
            while True:
                logs = await anyio.to_thread.run_sync(_logged, folder)
                if any(held for _, held in logs):
                    try:
                        if (await handoffs.pending_summary()).pending == 0:
                            [(path, _)] = logs
                            return path
                    except StoreError:
                        pass  # the group is not there yet
                await anyio.sleep(0.05)
    finally:
        await client.aclose()


def _lines(log_dir: Path, text: str) -> list[str]:
    return [
        line
        for log in sorted(log_dir.glob("*.log"))
        for line in log.read_text().splitlines()
        if text in line
    ]


async def _leave_a_writers_log(
    servers: ServerUrls, tmp_path: Path, run_id: str, tenant: str, sig: signal.Signals
) -> tuple[Pool, Pool, int, subprocess.CompletedProcess[str], Path]:
    """Run ``run_id`` with one writer whose publishes cannot reach Redis; once it acknowledged
    handoffs whose writes are in its local log, stop it with ``sig``, start two writers, and
    wait for the run. Returns both pools (the cut writer's second), its exit code, the wait,
    and the log it left."""
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_STUB_DELAY_SECONDS="0.2",
        AGENTMEM_RECLAIM_IDLE_MS="2000",
        AGENTMEM_DRAIN_GRACE_SECONDS="0",
    )
    pool = Pool(env, tmp_path / "workers")
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        proxy.cut_requests_holding = PUBLISH_SHA
        cut = Pool(
            {
                **env,
                "REDIS_URL": via(servers.redis_url, proxy.port),
                "AGENTMEM_COMMAND_TIMEOUT_SECONDS": "1",
                "AGENTMEM_CONNECT_TIMEOUT_SECONDS": "1",
            },
            tmp_path / "cut",
        )
        for role in ("research", "review", "coordinator"):
            pool.start(role)
        victim = cut.start("writer")
        try:
            submitted = await anyio.to_thread.run_sync(
                lambda: cli(env, "submit", "--tenant", tenant, "--run-id", run_id)
            )
            assert submitted.returncode == 0, submitted.stderr
            orphan = await _acknowledged_with_writes_in_log(
                servers.redis_url, run_id, tmp_path / "data" / "wal" / path_part(run_id)
            )
            os.kill(victim.pid, sig)
            code = await anyio.to_thread.run_sync(lambda: victim.wait(60))
            pool.start("writer")
            pool.start("writer")
            waited = await anyio.to_thread.run_sync(
                lambda: cli(env, "wait", run_id, "--timeout", "90", timeout=120)
            )
        finally:
            pool.stop()
            cut.stop()
    assert waited.returncode == 0, waited.stderr + pool.logs() + cut.logs()
    return pool, cut, code, waited, orphan


async def test_a_killed_workers_acknowledged_writes_are_sent_once_by_a_later_worker(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A writer whose publishes cannot reach Redis keeps its handoffs' writes in its local log
    and acknowledges the handoffs; it is SIGKILLed. Of two writers started later on the same
    data dir exactly one adopts the log and sends it; the run completes whole."""
    run_id = f"{namespace}-orphan"
    pool, _, code, waited, orphan = await _leave_a_writers_log(
        servers, tmp_path, run_id, f"t-{namespace}", signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    await assert_run_is_whole(
        servers.redis_url, servers.database_url, run_id, outcome(waited.stdout)
    )
    assert len(_lines(pool.log_dir, f"adopted {orphan}: sent its")) == 1, pool.logs()
    assert not orphan.exists()


async def test_a_drained_worker_names_the_log_it_could_not_send_and_a_later_worker_sends_it(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A SIGTERMed writer that cannot send its local log exits 0 saying, in one line, which
    file keeps it; a writer started later sends it once and the run completes whole."""
    run_id = f"{namespace}-drained"
    pool, cut, code, waited, orphan = await _leave_a_writers_log(
        servers, tmp_path, run_id, f"t-{namespace}", signal.SIGTERM
    )
    assert code == 0, cut.logs()
    assert len(_lines(cut.log_dir, f"kept in {orphan}")) == 1, cut.logs()
    await assert_run_is_whole(
        servers.redis_url, servers.database_url, run_id, outcome(waited.stdout)
    )
    assert len(_lines(pool.log_dir, f"adopted {orphan}: sent its")) == 1, pool.logs()
    assert not orphan.exists()
