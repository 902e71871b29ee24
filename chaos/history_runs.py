"""``python -m chaos --history``: seeded workload runs under faults, each history checked.

Each run (:func:`history_run`) starts the workload (:mod:`chaos.workload_run`), injects one or
more faults (:mod:`chaos.workload_faults`) at moments drawn from its seed, waits for the work
to end, and hands the merged history to the checker (:func:`check_history`, the one place it
is called). The histories stay in ``.agentmem/chaos/<seed>/`` (one file per process, and
``run.json`` saying what was injected), so ``python -m chaos --check .agentmem/chaos/<seed>``
checks a run again. Redis and PostgreSQL are local servers started for the session (a fault
must be able to restart Redis); each run works in a namespace of its own.
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

import anyio
from rich.console import Console

from chaos.checker import check
from chaos.history import Op, read_history
from chaos.session import ChaosServers
from chaos.workload_faults import FAULTS, HistoryFault, Inflicted
from chaos.workload_run import WorkloadRun
from memory import MemoryConfig, open_memory

HISTORIES = Path(".agentmem") / "chaos"


@dataclass
class Verdict:
    """A history's operations per kind, and the checker's findings."""

    ops: Counter[str]
    anomalies: list[str]
    summary: str = ""
    undetermined: bool = False

    @property
    def ok(self) -> bool:
        return self.anomalies == [] and not self.undetermined


def check_history(ops: list[Op]) -> Verdict:
    """Check ``ops`` with :func:`chaos.checker.check` (the one call of it)."""
    completed = Counter(op.f for op in ops if op.type != "invoke")
    report = check(ops)
    found = [f"{a.kind}: {a.description}" for a in report.anomalies]
    return Verdict(completed, found, report.summary(), undetermined=report.valid is None)


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


def draw_faults(rng: random.Random) -> list[HistoryFault]:
    """One or two kinds of fault for a run."""
    kinds = list(FAULTS)
    return rng.sample(kinds, rng.choice((1, 1, 2)))


async def history_run(
    servers: ChaosServers,
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
    kinds = faults if faults is not None else draw_faults(rng)
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
            async with anyio.create_task_group() as tg:
                for kind in kinds:
                    at = rng.uniform(0.5, max(1.0, seconds - 3.5))
                    tg.start_soon(_inject, run, kind, at, outcome)
            await run.wait()
            outcome.seconds = run.elapsed()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (folder / "run.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "namespace": namespace,
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
) -> list[HistoryOutcome]:
    """``runs`` workload runs, seeds ``first_seed`` onwards, on servers of their own."""
    servers = ChaosServers()
    await anyio.to_thread.run_sync(servers.start)
    try:
        config = MemoryConfig(redis_url=servers.redis.url, database_url=servers.postgres.url)
        async with open_memory(config, "chaos-history"):  # migrates the schema once
            pass
        outcomes = []
        for seed in range(first_seed, first_seed + runs):
            started = time.monotonic()
            outcome = await history_run(servers, seed=seed, seconds=seconds, faults=faults)
            outcome.seconds = time.monotonic() - started
            console.print(describe(outcome), markup=False, highlight=False, soft_wrap=True)
            outcomes.append(outcome)
        return outcomes
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(servers.stop)


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
    lines = [f"  {verdict.ops.total()} ops ({kinds}); {found}"]
    lines += [f"  ! {anomaly}" for anomaly in verdict.anomalies[:20]]
    if verdict.anomalies:
        lines.append(f"  history: {folder}")
    return "\n".join(lines)
