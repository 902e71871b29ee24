"""The coordinators' sweep: a run moved in flight is started, a run past its timeout fails."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.memory import Memory, open_memory
from agentmem.memory.admission import Admission
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES
from agentmem.orchestrator.sources import load_sources
from agentmem.protocol.events import RunRequested
from agentmem.service.submit import RunStatus, run_state, submit
from tests.orchestrator.runs import cli_env
from tests.service.pool import Pool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


def _settings(servers: ServerUrls, **extra: object) -> Settings:
    return Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        **extra,  # type: ignore[arg-type]
    )


async def _until_ended(root: Memory, run_id: str) -> RunStatus:
    with anyio.fail_after(240):
        while True:
            status = await run_state(root, run_id)
            if status.state in {"completed", "failed"}:
                return status
            await anyio.sleep(0.1)


async def test_a_run_moved_in_flight_but_never_started_is_started_and_completes(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A release moves the tenant's waiting run in flight and its caller dies before starting
    it: a coordinator's sweep starts it, and it completes."""
    tenant = f"t-{namespace}"
    settings = _settings(servers, tenant_max_inflight=1)
    request = RunRequested(topic=DEFAULT_TOPIC, sources=load_sources(PROJECT_SOURCES))
    first, second = f"{namespace}-first", f"{namespace}-second"
    pool = Pool(cli_env(servers.redis_url, servers.database_url, tmp_path), tmp_path / "w")
    try:
        config = settings.memory_config(client_name="agentmem:test")
        async with open_memory(config, "service", migrate=False) as root:
            admission = Admission(root.client, tenant)
            for run_id in (first, second):
                await admission.claim(run_id)
            raw = request.model_dump_json()
            assert await admission.admit(first, raw, limit=1, max_queued=10) == "start"
            assert await admission.admit(second, raw, limit=1, max_queued=10) == "queued"
            assert await admission.release(first, limit=1) == [(second, raw)]  # then "dies"
            pool.start_all()
            status = await _until_ended(root, second)
            assert status.state == "completed", status.error or pool.logs()
            with anyio.fail_after(60):  # its place is freed after its end is announced
                while await admission.counts() != (0, 0):
                    await anyio.sleep(0.1)
    finally:
        pool.stop()


async def test_a_run_past_its_timeout_fails_with_one_line_and_frees_its_place(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """With a run timeout shorter than a run (slow stub LLM), the run fails with a one-line
    reason, and the tenant's waiting run takes its place."""
    tenant = f"t-{namespace}"
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_STUB_DELAY_SECONDS="5",
        AGENTMEM_RUN_TIMEOUT_SECONDS="3",
        AGENTMEM_TENANT_MAX_INFLIGHT="1",
    )
    settings = _settings(servers, tenant_max_inflight=1, run_timeout_seconds=3)
    docs = load_sources(PROJECT_SOURCES)
    first, second = f"{namespace}-first", f"{namespace}-second"
    pool = Pool(env, tmp_path / "w")
    pool.start_all()
    try:
        config = settings.memory_config(client_name="agentmem:test")
        async with open_memory(config, "service", migrate=False) as root:
            for n, run_id in enumerate((first, second)):
                topic = f"{DEFAULT_TOPIC} {n}"
                await submit(
                    root, settings, tenant=tenant, topic=topic, sources=docs, run_id=run_id
                )
            status = await _until_ended(root, first)
            assert status.state == "failed", pool.logs()
            assert status.error is not None
            assert "did not end within 3 s" in status.error
            assert "\n" not in status.error
            with anyio.fail_after(60):  # the place is free: the waiting run starts
                while True:
                    if (await run_state(root, second)).state != "queued":
                        break
                    await anyio.sleep(0.1)
    finally:
        pool.stop()
