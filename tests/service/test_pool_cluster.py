"""The pool on a local Redis Cluster: workers serve runs whose keys live on different primaries,
and each role's queue shards spread over the primaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from agentmem.devservers import ServerUrls
from agentmem.devservers.cluster import LocalCluster
from agentmem.memory import MemoryConfig
from agentmem.memory.connections import connect_redis
from agentmem.memory.keys import work_bell
from tests.orchestrator.runs import assert_run_is_whole, cli_env, outcome
from tests.service.pool import Pool
from tests.service.test_pool import cli

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_pool_on_a_cluster_serves_tenants_runs_over_every_primary(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """REDIS_URL at one node of a 3 + 3 cluster: the queue shards of each role hash to more
    than one primary, and runs of two tenants complete whole."""
    with LocalCluster(tmp_path / "cluster") as cluster:
        client = await connect_redis(MemoryConfig(redis_url=cluster.url))
        try:
            assert isinstance(client, RedisCluster)
            for role in ("research", "writer", "review", "coordinator"):
                nodes = [client.get_node_from_key(work_bell(role, s)) for s in range(4)]
                owners = {node.name for node in nodes if node is not None}
                assert len(owners) > 1, (role, owners)
        finally:
            await client.aclose()
        env = cli_env(cluster.url, servers.database_url, tmp_path)
        pool = Pool(env, tmp_path / "workers")
        pool.start_all()
        try:
            ids = []
            for tenant in ("acme", "globex"):
                run_id = f"{namespace}-{tenant}"
                submitted = cli(env, "submit", "--tenant", tenant, "--run-id", run_id)
                assert submitted.returncode == 0, submitted.stderr
                ids.append(run_id)
            for run_id in ids:
                waited = cli(env, "wait", run_id, "--timeout", "150", timeout=170)
                assert waited.returncode == 0, waited.stderr + pool.logs()
                await assert_run_is_whole(
                    cluster.url, servers.database_url, run_id, outcome(waited.stdout)
                )
        finally:
            pool.stop()
