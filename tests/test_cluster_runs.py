"""Whole runs on a local Redis Cluster (REDIS_URL at one node) with a PostgreSQL read replica.

The CLI, agents and servers run in separate processes, as in tests/orchestrator; one run has
the primary serving its hash slot SIGKILLed while it is in flight.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from agentmem.chaos.failover import owner_of
from agentmem.chaos.invariants import run_problems
from agentmem.devservers.cluster import LocalCluster
from agentmem.devservers.replica import ReplicatedPostgres, local_replicated_postgres
from agentmem.memory import open_memory
from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.connections import MemoryConfig
from agentmem.memory.errors import ServerUnavailableError
from agentmem.orchestrator.sources import load_sources
from tests.orchestrator.runs import (
    SOURCES,
    cli_env,
    expected_fact_count,
    finish,
    outcome,
    start_cli,
    wait_until_gone,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

SLOW = {"AGENTMEM_STUB_DELAY_SECONDS": "0.2", "AGENTMEM_RECLAIM_IDLE_MS": "1500"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as started:
        yield started


@pytest.fixture(scope="module")
def postgres() -> Iterator[ReplicatedPostgres]:
    with local_replicated_postgres() as servers:
        yield servers


def env_for(cluster: LocalCluster, postgres: ReplicatedPostgres, tmp_path: Path) -> dict[str, str]:
    return cli_env(cluster.url, postgres.url, tmp_path, DATABASE_READ_URL=postgres.read_url, **SLOW)


def config_for(cluster: LocalCluster, postgres: ReplicatedPostgres) -> MemoryConfig:
    return MemoryConfig(redis_url=cluster.url, database_url=postgres.url, connect_timeout=1.0)


def stream_ms(event: AgentEvent) -> int:
    """When the server appended ``event`` (its stream id's first part, in ms)."""
    return int((event.event_id or "0").partition("-")[0])


async def wait_for(
    config: MemoryConfig, run_id: str, accept: Callable[[AgentEvent], bool]
) -> AgentEvent:
    """The first event of the run's log that ``accept`` accepts (polling, up to 90 s)."""
    event = await first_within(config, run_id, accept, 90)
    if event is None:
        msg = f"no event of run {run_id} was accepted within 90 s"
        raise TimeoutError(msg)
    return event


async def first_within(
    config: MemoryConfig, run_id: str, accept: Callable[[AgentEvent], bool], seconds: float
) -> AgentEvent | None:
    """The first event of the run's log that ``accept`` accepts, or None after ``seconds``."""
    async with open_memory(config, run_id, migrate=False) as m:
        log = m.events("run")
        with anyio.move_on_after(seconds):  # inside: the memory closes outside the scope
            while True:
                try:
                    for event in await log.read_events(count=10_000):
                        if accept(event):
                            return event
                except ServerUnavailableError:
                    pass
                await anyio.sleep(0.05)
    return None


async def problems(config: MemoryConfig, run_id: str, stdout: str) -> list[str]:
    out = outcome(stdout)
    assert all(s["state"] == "approved" for s in out.record["sections"])
    async with open_memory(config, run_id, migrate=False) as m:
        return await run_problems(
            m.memory,
            m.db,
            report=out.report,
            record=out.record,
            sources=load_sources(SOURCES),
            expected_facts=expected_fact_count(),
        )


async def test_a_run_on_a_cluster_with_a_read_replica_completes_whole(
    cluster: LocalCluster, postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    """REDIS_URL at one node, DATABASE_READ_URL at a replica: the run is whole."""
    rid = f"cluster-{uuid.uuid4().hex[:8]}"
    process = start_cli(env_for(cluster, postgres, tmp_path), "run", "--run-id", rid)
    code, stdout, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    assert await problems(config_for(cluster, postgres), rid, stdout) == []
    assert wait_until_gone(rid) == []


async def test_a_run_whose_primary_is_killed_mid_run_completes_whole(
    cluster: LocalCluster, postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    """SIGKILL of the primary serving the run's slot once a draft exists; its replica takes
    over and the run completes with every fact, once."""
    rid = f"failover-{uuid.uuid4().hex[:8]}"
    config = config_for(cluster, postgres)
    victim = await owner_of(cluster, rid)

    process = start_cli(env_for(cluster, postgres, tmp_path), "run", "--run-id", rid)
    await wait_for(config, rid, lambda e: e.event_type == "section.drafted")
    await anyio.to_thread.run_sync(victim.crash)

    code, stdout, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    alive = next(n for n in cluster.nodes if n.running)  # REDIS_URL may name the dead node
    after = MemoryConfig(redis_url=alive.url, database_url=postgres.url, connect_timeout=1.0)
    assert await problems(after, rid, stdout) == []
    assert wait_until_gone(rid) == []


async def test_a_run_keeps_every_fact_when_its_primary_dies_with_writes_its_replica_never_got(
    cluster: LocalCluster, postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    """The window asynchronous replication leaves: once research has begun, the replica of
    the run's primary is paused and cut off; a writer with nothing in flight sends its next
    batch to the primary alone (one that has seen a replica sends nothing more until one holds
    it); then the primary is SIGKILLed and the replica, which never got those writes, is
    promoted. What the primary alone acknowledged is still in the agents' logs and is sent
    again: the run completes with every fact, once (and when the primary was seen holding an
    event written after the cut, a resend must be logged)."""
    rid = f"certainloss-{uuid.uuid4().hex[:8]}"
    config = config_for(cluster, postgres)
    victim = await owner_of(cluster, rid)
    [replica] = cluster.replicas_of(victim)

    process = start_cli(env_for(cluster, postgres, tmp_path), "run", "--run-id", rid)
    await wait_for(config, rid, lambda e: e.event_type == "source.assigned")
    replica.pause()
    try:
        victim.disconnect_replicas()
        cut_ms = int(time.time() * 1000)
        # An event the primary alone holds (a stream id is the server's clock in ms), if some
        # writer sends one: a writer whose batch was in flight at the cut sends nothing more.
        after_cut = await first_within(config, rid, lambda e: stream_ms(e) > cut_ms, 10)
        primary_only = after_cut is not None
        await anyio.sleep(1.0)  # more of the agents' writes reach the primary alone
        await anyio.to_thread.run_sync(victim.crash)
    finally:
        replica.resume()

    code, stdout, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    alive = next(n for n in cluster.nodes if n.running)
    after = MemoryConfig(redis_url=alive.url, database_url=postgres.url, connect_timeout=1.0)
    assert await problems(after, rid, stdout) == []
    assert wait_until_gone(rid) == []
    logs = "".join(p.read_text() for p in (tmp_path / "data").rglob("*.log"))
    resends = [line for line in logs.splitlines() if "are missing from Redis (a failover)" in line]
    print(f"{len(resends)} resends after the failover:", *resends, sep="\n")
    if primary_only:  # the promoted replica lacked an event the primary had acknowledged
        assert resends
