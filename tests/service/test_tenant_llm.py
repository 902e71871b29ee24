"""Pool workers hold a permit of the tenant's LLM semaphore around each call to the endpoint."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.devservers.redis_server import EmbeddedRedis
from agentmem.memory import open_memory
from agentmem.memory.keys import TenantKeys
from agentmem.orchestrator.defaults import DEFAULT_TOPIC
from agentmem.orchestrator.sources import load_sources
from agentmem.service.submit import run_state, submit
from tests.agents.fake_openai_server import Answer, Script, fake_openai
from tests.orchestrator.runs import SOURCES, cli_env
from tests.orchestrator.test_weak_model_run import weak_model
from tests.service.pool import Pool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

CAP = 2


async def test_two_runs_of_a_tenant_never_hold_more_llm_calls_than_its_cap(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """Two runs of one tenant on a pool, tenant cap 2, run cap 8: at every request the endpoint
    receives, the tenant's semaphore holds 1 or 2 permits, and both runs complete. The pool has
    a Redis of its own: the work queues are shared by every run on a server, and a ticket
    another test left behind would send its run's calls (another tenant's) to this endpoint."""
    with EmbeddedRedis(tmp_path / "redis") as own:
        redis_url = own.url
        tenant = f"t-{namespace}"
        key = TenantKeys(tenant).semaphore("llm")
        seen: list[int] = []
        lock = threading.Lock()
        observer = redis.Redis.from_url(redis_url)

        def respond(request: dict[str, Any]) -> Answer:
            held = int(observer.zcard(key))
            with lock:
                seen.append(held)
            answer = weak_model(request)
            # calls of 0.5 s: long enough for the two runs to overlap
            return Answer(answer.status, answer.body, delay=0.5)

        with fake_openai(Script([], respond=respond)) as url:
            env = cli_env(
                redis_url,
                servers.database_url,
                tmp_path,
                AGENTMEM_LLM="openai",
                OPENAI_BASE_URL=url,
                OPENAI_API_KEY="sk-test",
                AGENTMEM_REVIEW_ROUNDS="1",
                AGENTMEM_LLM_MAX_CONCURRENCY="8",
                AGENTMEM_TENANT_LLM_MAX_CONCURRENCY=str(CAP),
            )
            settings = Settings(
                redis_url=SecretStr(redis_url), database_url=SecretStr(servers.database_url)
            )
            pool = Pool(env, tmp_path / "w")
            pool.start_all()
            try:
                config = settings.memory_config(client_name="agentmem:test")
                async with open_memory(config, "service", migrate=False) as root:
                    runs = [f"{namespace}-{n}" for n in range(2)]
                    for n, run_id in enumerate(runs):
                        topic = f"{DEFAULT_TOPIC} {n}"
                        docs = load_sources(SOURCES)
                        await submit(
                            root, settings, tenant=tenant, topic=topic, sources=docs, run_id=run_id
                        )
                    with anyio.fail_after(240):
                        for run_id in runs:
                            while True:
                                state = (await run_state(root, run_id)).state
                                assert state != "failed", pool.logs()
                                if state == "completed":
                                    break
                                await anyio.sleep(0.1)
            finally:
                pool.stop()
                observer.close()
    assert seen, "the endpoint was never called"
    assert min(seen) >= 1  # each call held a permit of the tenant's semaphore
    assert max(seen) <= CAP
    assert max(seen) == CAP  # (the two runs did call at once: the cap was what held them)
