"""Each agent process talks to Redis through one client (one connection pool), not one per store."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import redis.asyncio as redis

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, finish, start_cli, wait_for_event

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(200)]


async def test_every_agent_process_uses_one_redis_client(
    servers: ServerUrls, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Mid-run, the server sees one client name per agent process (names carry a pool id)."""
    rid = f"oneclient-{uuid.uuid4().hex[:8]}"
    env = cli_env(
        servers.redis_url, servers.database_url, tmp_path, AGENTMEM_STUB_DELAY_SECONDS="0.3"
    )
    process = start_cli(env, "run", "--run-id", rid, "--writers", "2")
    await wait_for_event(servers.redis_url, rid, lambda e: e.event_type == "section.drafted")
    clients = await redis_client.client_list()
    code, _, stderr = finish(process)

    pools: dict[str, set[str]] = defaultdict(set)
    for client in clients:
        name = client["name"]
        if name.startswith("agentmem:"):
            owner, pid, pool = name.rsplit("/", 2)
            pools[f"{owner}/{pid}"].add(pool)
    assert code == 0, stderr[-2000:]
    agents = {owner for owner in pools if not owner.startswith("agentmem:orchestrator/")}
    assert {owner.split("/")[0] for owner in agents} >= {
        "agentmem:research-1",
        "agentmem:writer-1",
        "agentmem:writer-2",
        "agentmem:review-1",
    }
    assert all(len(ids) == 1 for ids in pools.values()), dict(pools)
