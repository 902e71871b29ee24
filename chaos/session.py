"""``python -m agentmem.chaos`` (``make chaos``): the demo while agents die and servers stop or
crash.

Each run gets its own seed (the session's seed plus the run's index), which fixes what is
injected (the faults of :mod:`chaos.faults`) and when, so a failing run can be repeated with
``--seed``. The servers are local ones started here (chaos must be able to stop, crash and
start them). After each run the invariants of :mod:`chaos.invariants` are checked against a
clean run's fact count, and no agent process may be left running.
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
from datetime import datetime
from pathlib import Path

import anyio
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from agentmem.agents import Settings
from agentmem.chaos.faults import Fault, Injection, agent_processes, inject
from agentmem.chaos.invariants import run_problems
from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis
from agentmem.memory import leaves, open_memory
from agentmem.orchestrator import RunResult, run_report
from agentmem.orchestrator.progress import Progress
from agentmem.protocol.events import SourceDoc


@dataclass
class ChaosOutcome:
    seed: int
    run_id: str
    seconds: float
    injections: list[Injection] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class ChaosServers:
    """Local Redis and PostgreSQL that chaos may stop, crash and start at will."""

    def __init__(self, redis_appendfsync: str = "everysec") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="agentmem-chaos-"))
        self.folder.chmod(0o755)
        self.redis = EmbeddedRedis(self.folder / "redis", appendfsync=redis_appendfsync)
        self.postgres = EmbeddedPostgres(self.folder / "postgres")

    def start(self) -> None:
        self.redis.start()
        self.postgres.start()

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.destroy()
        shutil.rmtree(self.folder, ignore_errors=True)


def chaos_settings(base: Settings, servers: ChaosServers) -> Settings:
    """Fast failure detection and a slow-enough stub, so faults land on work in flight."""
    return base.model_copy(
        update={
            "redis_url": SecretStr(servers.redis.url),
            "database_url": SecretStr(servers.postgres.url),
            "llm": "stub",
            "stub_delay_seconds": 0.2,
            "reclaim_idle_ms": 1500,
            "lock_ttl_seconds": 3,
            "heartbeat_seconds": 1.0,
            "status_ttl_seconds": 3,
            "run_timeout_seconds": 240.0,
            "data_dir": str(servers.folder / "data"),
            "reports_dir": str(servers.folder / "reports"),
        }
    )


async def clean_fact_count(settings: Settings, topic: str, sources: list[SourceDoc]) -> int:
    """The number of facts a run without faults stores: the baseline for every chaos run."""
    result = await run_report(
        settings,
        run_id=f"chaos-clean-{secrets.token_hex(3)}",
        topic=topic,
        sources=sources,
        writers=1,
        progress=Progress(_quiet_console(), quiet=True),
    )
    return result.state.fact_count


async def chaos_run(
    settings: Settings,
    servers: ChaosServers,
    *,
    seed: int,
    topic: str,
    sources: list[SourceDoc],
    expected_facts: int,
    writers: int = 2,
) -> ChaosOutcome:
    """One run of the demo with faults injected at moments drawn from ``seed``."""
    rng = random.Random(seed)
    run_id = f"chaos-{seed}-{secrets.token_hex(2)}"
    outcome = ChaosOutcome(seed, run_id, 0.0)
    started = time.monotonic()
    finished = anyio.Event()
    results: list[RunResult] = []

    async def run() -> None:
        try:
            results.append(
                await run_report(
                    settings,
                    run_id=run_id,
                    topic=topic,
                    sources=sources,
                    writers=writers,
                    progress=Progress(_quiet_console(), quiet=True),
                )
            )
        except Exception as exc:
            outcome.problems.append(f"the run failed: {'; '.join(map(str, leaves(exc)))}")
        finally:
            finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for _ in range(rng.randint(2, 4)):
            with anyio.move_on_after(rng.uniform(0.3, 2.0)):
                await finished.wait()
            if finished.is_set():
                break
            at = time.monotonic() - started
            injection = await inject(rng, servers.redis, servers.postgres, run_id, at)
            if injection is not None:
                outcome.injections.append(injection)
    outcome.seconds = time.monotonic() - started
    if results:
        outcome.problems += await _check(settings, results[0], sources, expected_facts)
        _recovery_times(outcome, results[0])
    leftovers = agent_processes(run_id)
    if leftovers:
        outcome.problems.append(f"{len(leftovers)} agent processes left running")
    return outcome


async def _check(
    settings: Settings, result: RunResult, sources: list[SourceDoc], expected: int
) -> list[str]:
    report = await anyio.Path(result.report_path).read_text()
    record = json.loads(await anyio.Path(result.record_path).read_text())
    async with open_memory(settings.memory_config(), result.run_id) as m:
        return await run_problems(
            m.memory, m.db, report=report, record=record, sources=sources, expected_facts=expected
        )


def _recovery_times(outcome: ChaosOutcome, result: RunResult) -> None:
    """For each injection, how long after it ended the log moved on (from the run record)."""
    record = json.loads(result.record_path.read_text())
    stamps = sorted(datetime.fromisoformat(e["timestamp"]) for e in record["events"])
    for injection in outcome.injections:
        later = [t for t in stamps if injection.ended and t > injection.ended]
        if later and injection.ended:
            injection.recovered_after = (later[0] - injection.ended).total_seconds()


def _quiet_console() -> Console:
    return Console(quiet=True)


async def chaos_session(
    base: Settings,
    *,
    runs: int,
    first_seed: int,
    writers: int,
    topic: str,
    sources: list[SourceDoc],
    console: Console,
) -> list[ChaosOutcome]:
    """A clean run for the baseline, then ``runs`` chaos runs, seeds ``first_seed`` onwards."""
    servers = ChaosServers(base.redis_appendfsync)
    await anyio.to_thread.run_sync(servers.start)
    try:
        settings = chaos_settings(base, servers)
        expected = await clean_fact_count(settings, topic, sources)
        console.print(f"clean run: {expected} facts")
        outcomes = []
        for seed in range(first_seed, first_seed + runs):
            outcome = await chaos_run(
                settings,
                servers,
                seed=seed,
                topic=topic,
                sources=sources,
                expected_facts=expected,
                writers=writers,
            )
            mark = "[green]whole[/]" if outcome.ok else "[red]BROKEN[/]"
            console.print(
                f"  seed {seed}: {len(outcome.injections)} faults, {outcome.seconds:.1f} s, {mark}"
            )
            outcomes.append(outcome)
        return outcomes
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(servers.stop)


def fault_counts(outcomes: list[ChaosOutcome]) -> Counter[Fault]:
    """How many faults of each kind the runs received."""
    return Counter(i.fault for o in outcomes for i in o.injections)


def outcomes_table(outcomes: list[ChaosOutcome]) -> Table:
    """One row per run: its seed, what was injected, how long it took, and the verdict."""
    table = Table(title="chaos runs")
    for column in ("seed", "injected (and when the log moved on again)", "seconds", "result"):
        table.add_column(column)
    for outcome in outcomes:
        injected = "; ".join(i.describe() for i in outcome.injections) or "(run ended first)"
        verdict = "[green]whole[/]" if outcome.ok else f"[red]{'; '.join(outcome.problems)}[/]"
        table.add_row(str(outcome.seed), injected, f"{outcome.seconds:.1f}", verdict)
    return table
