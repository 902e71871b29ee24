"""Long-lived workers per role serve runs submitted by several tenants (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory import MemoryConfig
from agentmem.memory.connections import connect_redis
from tests.orchestrator.runs import ROOT, assert_run_is_whole, cli_env, outcome
from tests.service.pool import Pool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(servers: ServerUrls, tmp_path: Path) -> dict[str, str]:
    return cli_env(servers.redis_url, servers.database_url, tmp_path)


@pytest.fixture
def pool(env: dict[str, str], tmp_path: Path) -> Iterator[Pool]:
    started = Pool(env, tmp_path / "workers")
    yield started
    started.stop()


async def test_one_pool_serves_runs_of_several_tenants(
    servers: ServerUrls, env: dict[str, str], pool: Pool, namespace: str
) -> None:
    """Workers started once serve two tenants' runs to whole reports; submit returns the id."""
    pool.start_all()
    ids = []
    for tenant in ("acme", "globex"):
        run_id = f"{namespace}-{tenant}"
        submitted = cli(env, "submit", "--tenant", tenant, "--run-id", run_id)
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout.strip() == run_id
        ids.append(run_id)
    for run_id in ids:
        waited = cli(env, "wait", run_id, "--timeout", "150", timeout=170)
        assert waited.returncode == 0, waited.stderr + pool.logs()
        await assert_run_is_whole(
            servers.redis_url, servers.database_url, run_id, outcome(waited.stdout)
        )


async def test_the_same_submission_twice_makes_one_run(
    env: dict[str, str], pool: Pool, namespace: str
) -> None:
    """Submitting the same tenant, topic and sources twice gives one run id, run once."""
    pool.start_all()
    topic = f"idempotent submissions {namespace}"
    first = cli(env, "submit", "--tenant", "acme", "--topic", topic)
    second = cli(env, "submit", "--tenant", "acme", "--topic", topic)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == second.stdout.strip()
    waited = cli(env, "wait", first.stdout.strip(), "--timeout", "150", timeout=170)
    assert waited.returncode == 0, waited.stderr + pool.logs()


def test_wait_times_out_with_exit_2_on_a_run_nobody_serves(
    env: dict[str, str], namespace: str
) -> None:
    """Without workers, a submitted run stays queued; ``wait`` gives up with exit code 2."""
    submitted = cli(env, "submit", "--tenant", "idle", "--run-id", f"{namespace}-idle")
    assert submitted.returncode == 0, submitted.stderr
    waited = cli(env, "wait", f"{namespace}-idle", "--timeout", "0.5")
    assert waited.returncode == 2, waited.stderr
    assert "did not end within" in waited.stderr


@pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
    reason="counts the blocked clients of one standalone server (CLIENT LIST is per node)",
)
async def test_an_idle_worker_waits_on_every_shard_of_its_role_at_once(
    servers: ServerUrls, env: dict[str, str], pool: Pool
) -> None:
    """An idle worker holds a blocking read on each of its role's shards at the same time, so
    a ticket on any shard wakes it at once (not after a sweep's pause on another shard)."""
    shards = 4
    worker = pool.start("writer")
    client = await connect_redis(MemoryConfig(redis_url=servers.redis_url))
    try:
        with anyio.fail_after(60):  # as many blocked reads as shards: never on the old sweep
            while True:
                clients = await client.client_list()
                blocked = [
                    c
                    for c in clients
                    if f"/{worker.pid}/" in c.get("name", "")
                    and c.get("cmd") in {"xread", "xreadgroup"}
                    and "b" in c.get("flags", "")
                ]
                if len(blocked) == shards:
                    break
                await anyio.sleep(0.02)
    finally:
        await client.aclose()


def test_waiting_for_a_run_never_submitted_fails_at_once_naming_it(env: dict[str, str]) -> None:
    """`agentmem wait` on an unknown id exits 1 with one line, not after its timeout."""
    waited = cli(env, "wait", "never-submitted-run", "--timeout", "60", timeout=50)

    assert waited.returncode == 1
    assert "no run never-submitted-run was submitted" in waited.stderr


def test_a_running_run_is_not_forgotten_and_forcing_it_stops_no_worker(
    env: dict[str, str], pool: Pool, namespace: str
) -> None:
    """`forget` refuses a run in flight with one line; `--force` deletes it under the workers,
    which log the run's trouble and go on serving: another tenant's run completes."""
    slow = {**env, "AGENTMEM_STUB_DELAY_SECONDS": "1"}
    pool.env = slow
    pool.start_all()
    doomed = f"{namespace}-doomed"
    assert cli(slow, "submit", "--tenant", "first", "--run-id", doomed).returncode == 0
    assert cli(slow, "wait", doomed, "--timeout", "3").returncode == 2  # running by now

    refused = cli(slow, "forget", doomed, "--yes")
    assert refused.returncode == 1
    assert "still running" in refused.stderr
    assert cli(slow, "forget", doomed, "--yes", "--force").returncode == 0

    other = f"{namespace}-other"
    assert cli(slow, "submit", "--tenant", "second", "--run-id", other).returncode == 0
    waited = cli(slow, "wait", other, "--timeout", "150", timeout=170)
    assert waited.returncode == 0, waited.stderr + pool.logs()
    assert all(p.poll() is None for ps in pool.workers.values() for p in ps), pool.logs()
