"""The history workload on a local Redis Cluster, through a failover that loses writes.

The run's namespace's primary is killed after 1-2 s of writes its paused replica never got;
the replica is promoted without them. The work must go on against the new primary, and the
history must still keep every promise the checker checks.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agentmem.chaos.__main__ import parse_args
from agentmem.chaos.failover import ClusterServers, owner_of
from agentmem.chaos.history import read_history
from agentmem.chaos.history_runs import check_folder, draw_faults, history_run
from agentmem.chaos.workload_faults import HistoryFault
from agentmem.memory import MemoryConfig, open_memory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster_servers() -> Iterator[ClusterServers]:
    servers = ClusterServers()
    servers.start()
    yield servers
    servers.stop()


@pytest.mark.anyio
async def test_a_run_through_a_lossy_failover_goes_on_and_its_history_checks_out(
    cluster_servers: ClusterServers, tmp_path: Path
) -> None:
    """The failover lands, the replica is promoted, leases and handoffs are granted on the new
    primary after it, and the checker finds no anomaly."""
    config = MemoryConfig(
        redis_url=cluster_servers.redis.url, database_url=cluster_servers.postgres.url
    )
    async with open_memory(config, "history-tests"):  # migrates the schema
        pass
    outcome = await history_run(
        cluster_servers,
        seed=7,
        faults=[HistoryFault.CLUSTER_FAILOVER],
        seconds=10.0,
        consumers=1,
        root=tmp_path,
    )

    [failover] = outcome.faults
    assert failover.fault is HistoryFault.CLUSTER_FAILOVER
    ops = read_history(*sorted(outcome.folder.glob("*.jsonl")))
    promoted_by = ops[0].time + int((failover.at + failover.seconds) * 1e9)
    after = {op.f for op in ops if op.type == "ok" and op.time > promoted_by}
    assert {"acquire", "write", "deliver", "effect", "ack"} <= after
    namespace = json.loads((outcome.folder / "run.json").read_text())["namespace"]
    serving = await owner_of(cluster_servers.redis, namespace)
    assert f":{serving.port} missed" in failover.what  # the paused replica serves it now
    verdict = check_folder(outcome.folder)
    assert verdict.ok, (verdict.summary, verdict.anomalies)
    await anyio.to_thread.run_sync(cluster_servers.heal)  # whole again for the next test


def test_cluster_runs_always_fail_over_and_standalone_runs_never_do() -> None:
    """Each cluster draw holds the failover and no Redis rollback; a standalone draw holds no
    failover, and draws what it drew before the failover existed (seeds keep their faults)."""
    before = [f for f in HistoryFault if f is not HistoryFault.CLUSTER_FAILOVER]
    for seed in range(200):
        cluster = draw_faults(random.Random(seed), cluster=True)
        assert cluster[0] is HistoryFault.CLUSTER_FAILOVER
        assert HistoryFault.REDIS_ROLLBACK not in cluster
        rng = random.Random(seed)
        assert draw_faults(random.Random(seed)) == rng.sample(before, rng.choice((1, 1, 2)))


def test_the_failover_fault_needs_the_cluster_switch() -> None:
    """``--fault 'cluster failover'`` without ``--cluster`` is refused (there is no replica)."""
    with pytest.raises(SystemExit):
        parse_args(["--history", "--fault", "cluster failover"])
    args = parse_args(["--history", "--cluster", "--fault", "cluster failover"])
    assert args.cluster
