"""``python -m agentmem.chaos --history``: seeded workload runs under faults, each history checked.

Each run (:func:`history_run`) starts the workload (:mod:`chaos.workload_run`), injects one or
more faults (:mod:`chaos.workload_faults`) at moments drawn from its seed, waits for the work
to end, and hands the merged history to the checker (:func:`check_history`, the one place it
is called). The histories stay in ``.agentmem/chaos/<seed>/`` (``.agentmem/chaos/cluster/``
on a cluster; one file per process, and ``run.json`` saying what was injected), so
``python -m agentmem.chaos --check .agentmem/chaos/<seed>`` checks a run again. Redis and PostgreSQL
are local servers started for the session (a fault must be able to restart Redis); each run
works in a namespace of its own. With ``cluster`` Redis is a local Redis Cluster
(:mod:`chaos.failover`): every run fails the namespace's primary over to a replica that missed
its last writes, and may draw one more fault; the cluster is made whole again between runs.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
from rich.console import Console

from agentmem.chaos.checker import ACKS_LOST, check
from agentmem.chaos.failover import ClusterServers
from agentmem.chaos.history import Op, read_history
from agentmem.chaos.session import ChaosServers
from agentmem.chaos.workload_faults import (
    CLUSTER_ONLY,
    FAULTS,
    STANDALONE_ONLY,
    HistoryFault,
    Inflicted,
)
from agentmem.chaos.workload_run import WorkloadRun
from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis
from agentmem.devservers.cluster import LocalCluster
from agentmem.memory import MemoryConfig, open_memory

HISTORIES = Path(".agentmem") / "chaos"


class HistoryServers(Protocol):
    """Redis (one server or a local cluster) and PostgreSQL, which faults may restart."""

    @property
    def redis(self) -> EmbeddedRedis | LocalCluster: ...

    @property
    def postgres(self) -> EmbeddedPostgres: ...


@dataclass
class Verdict:
    """A history's operations per kind, and the checker's findings."""

    ops: Counter[str]
    anomalies: list[str]
    summary: str = ""
    undetermined: bool = False
    acks_lost: int = 0  # entries delivered again after an ok ack: Redis lost the ack

    @property
    def ok(self) -> bool:
        return self.anomalies == [] and not self.undetermined


def check_history(ops: list[Op]) -> Verdict:
    """Check ``ops`` with :func:`chaos.checker.check` (the one call of it)."""
    completed = Counter(op.f for op in ops if op.type != "invoke")
    report = check(ops)
    found = [f"{a.kind}: {a.description}" for a in report.anomalies]
    lost = report.subjects.get(ACKS_LOST, 0)
    return Verdict(
        completed, found, report.summary(), undetermined=report.valid is None, acks_lost=lost
    )


def check_folder(folder: Path) -> Verdict:
    """Check the history kept in ``folder`` again."""
    return check_history(read_history(*sorted(folder.glob("*.jsonl"))))


@dataclass
class HistoryOutcome:
    seed: int
    folder: Path
    seconds: float = 0.0
    faults: list[Inflicted] = field(default_factory=list)
    verdict: Verdict | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is not None and self.verdict.ok


def draw_faults(rng: random.Random, *, cluster: bool = False) -> list[HistoryFault]:
    """One or two kinds of fault for a run; on a cluster, the failover and maybe one more."""
    if cluster:
        others = [k for k in FAULTS if k not in CLUSTER_ONLY | STANDALONE_ONLY]
        extra = rng.sample(others, rng.choice((0, 1)))
        return [HistoryFault.CLUSTER_FAILOVER, *extra]
    kinds = [k for k in FAULTS if k not in CLUSTER_ONLY]
    return rng.sample(kinds, rng.choice((1, 1, 2)))


WORK_AFTER_FAULTS = 3.0  # seconds of work every run shows after its last fault ended


def fault_time(rng: random.Random, kind: HistoryFault, seconds: float) -> float:
    """When ``kind`` is injected: the failover early enough that work goes on after it."""
    if kind is HistoryFault.CLUSTER_FAILOVER:
        return rng.uniform(0.5, max(1.0, seconds / 3))
    return rng.uniform(0.5, max(1.0, seconds - 3.5))


async def history_run(
    servers: HistoryServers,
    *,
    seed: int,
    faults: list[HistoryFault] | None = None,
    seconds: float = 8.0,
    clients: int = 4,
    consumers: int = 2,
    unsafe: str = "",
    stall: bool = False,
    root: Path = HISTORIES,
) -> HistoryOutcome:
    """One run of the workload with ``faults`` (default: drawn from ``seed``), checked."""
    rng = random.Random(seed)
    cluster = isinstance(servers.redis, LocalCluster)
    kinds = faults if faults is not None else draw_faults(rng, cluster=cluster)
    folder = root / str(seed)
    shutil.rmtree(folder, ignore_errors=True)
    outcome = HistoryOutcome(seed, folder)
    namespace = f"hist-{seed}-{secrets.token_hex(3)}"
    scratch = Path(tempfile.mkdtemp(prefix="agentmem-history-"))
    try:
        async with WorkloadRun(
            servers.redis,
            servers.postgres,
            namespace,
            seed,
            folder,
            scratch,
            seconds=seconds,
            clients=clients,
            consumers=consumers,
            unsafe=unsafe,
            stall=stall,
        ) as run:
            await run.go()
            try:
                async with anyio.create_task_group() as tg:
                    for kind in kinds:
                        at = fault_time(rng, kind, seconds)
                        tg.start_soon(_inject, run, kind, at, outcome)
            finally:
                with anyio.CancelScope(shield=True):
                    await run.end(after=WORK_AFTER_FAULTS)
            await run.wait()
            outcome.seconds = run.elapsed()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (folder / "run.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "namespace": namespace,
                "redis": "cluster" if cluster else "standalone",
                "faults": [f.describe() for f in outcome.faults],
                "unsafe": unsafe,
                "stall": stall,
            },
            indent=2,
        )
    )
    outcome.verdict = check_folder(folder)
    return outcome


async def _inject(run: WorkloadRun, kind: HistoryFault, at: float, outcome: HistoryOutcome) -> None:
    await anyio.sleep(max(0.0, at - run.elapsed()))
    inflicted = await FAULTS[kind](run, random.Random(f"{run.seed}-{kind}"))
    if inflicted is not None:
        outcome.faults.append(inflicted)


async def history_session(
    *,
    runs: int,
    first_seed: int,
    seconds: float,
    console: Console,
    faults: list[HistoryFault] | None = None,
    cluster: bool = False,
    unsafe: str = "",
) -> list[HistoryOutcome]:
    """``runs`` workload runs, seeds ``first_seed`` onwards, on servers of their own (a
    local Redis Cluster with ``cluster``); ``unsafe`` as :mod:`chaos.workload` takes it."""
    servers: ChaosServers | ClusterServers = ClusterServers() if cluster else ChaosServers()
    root = history_root(cluster=cluster)
    await anyio.to_thread.run_sync(servers.start)
    try:
        config = MemoryConfig(redis_url=servers.redis.url, database_url=servers.postgres.url)
        async with open_memory(config, "chaos-history"):  # migrates the schema once
            pass
        outcomes = []
        for seed in range(first_seed, first_seed + runs):
            started = time.monotonic()
            outcome = await history_run(
                servers, seed=seed, seconds=seconds, faults=faults, unsafe=unsafe, root=root
            )
            outcome.seconds = time.monotonic() - started
            console.print(describe(outcome), markup=False, highlight=False, soft_wrap=True)
            outcomes.append(outcome)
            if isinstance(servers, ClusterServers):
                await anyio.to_thread.run_sync(servers.heal)
        return outcomes
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(servers.stop)


def history_root(*, cluster: bool) -> Path:
    """Where a session's histories are kept: ``<root>/<seed>/``."""
    return HISTORIES / "cluster" if cluster else HISTORIES


def describe(outcome: HistoryOutcome) -> str:
    """A run's lines: seed, faults, operations per kind, anomalies (each on a line)."""
    assert outcome.verdict is not None
    faults = "; ".join(f.describe() for f in outcome.faults) or "none landed"
    head = f"seed {outcome.seed} ({outcome.seconds:.0f} s): {faults}"
    return f"{head}\n{describe_verdict(outcome.verdict, outcome.folder)}"


def describe_verdict(verdict: Verdict, folder: Path) -> str:
    """Operations per kind and what the checker found, then each anomaly on a line."""
    kinds = ", ".join(f"{f} {n}" for f, n in sorted(verdict.ops.items()))
    found = f"{len(verdict.anomalies)} anomalies"
    found += " (some document undetermined)" if verdict.undetermined else ""
    if verdict.acks_lost:
        found += f"; {verdict.acks_lost} acks lost by Redis, their entries delivered again"
    lines = [f"  {verdict.ops.total()} ops ({kinds}); {found}"]
    lines += [f"  ! {anomaly}" for anomaly in verdict.anomalies[:20]]
    if verdict.anomalies:
        lines.append(f"  history: {folder}")
    return "\n".join(lines)
