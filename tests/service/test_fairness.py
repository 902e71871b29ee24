"""Tenants take turns on the pool: a heavy tenant's backlog does not hold up another's run."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.memory import open_memory
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES
from agentmem.orchestrator.sources import load_sources
from agentmem.service.submit import run_state, submit
from tests.orchestrator.runs import cli_env
from tests.service.pool import Pool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

HEAVY_RUNS = 8


async def test_a_light_tenants_run_ends_while_a_heavy_tenants_backlog_waits(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """Eight runs of one tenant, all in flight, then one of another on one worker per role:
    the other's run ends before half of the eight have (on one FIFO queue it ended with the
    last of them, its every handoff behind theirs)."""
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_STUB_DELAY_SECONDS="0.2",
        AGENTMEM_TENANT_MAX_INFLIGHT="20",
    )
    settings = Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        tenant_max_inflight=20,
    )
    docs = load_sources(PROJECT_SOURCES)
    pool = Pool(env, tmp_path / "workers")
    pool.start_all()
    try:
        config = settings.memory_config(client_name="agentmem:test")
        async with open_memory(config, "service", migrate=False) as root:
            heavy = [f"{namespace}-heavy-{n}" for n in range(HEAVY_RUNS)]
            for run_id in heavy:
                await submit(
                    root, settings, tenant="heavy", topic=DEFAULT_TOPIC, sources=docs, run_id=run_id
                )
            light = f"{namespace}-light"
            await submit(
                root, settings, tenant="light", topic=DEFAULT_TOPIC, sources=docs, run_id=light
            )
            with anyio.fail_after(240):
                while (await run_state(root, light)).state != "completed":
                    assert (await run_state(root, light)).state != "failed", pool.logs()
                    await anyio.sleep(0.1)
            ended = [r for r in heavy if (await run_state(root, r)).state == "completed"]
            assert len(ended) < HEAVY_RUNS / 2, pool.logs()
    finally:
        pool.stop()
