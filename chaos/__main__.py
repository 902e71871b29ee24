"""``python -m agentmem.chaos``: seeded chaos runs of the demo, checked against the run invariants;
``--history``: seeded runs of the history workload under faults, each history checked."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from pydantic import ValidationError
from rich.console import Console

from agentmem.agents import Settings
from agentmem.chaos.history_runs import (
    check_folder,
    describe_verdict,
    history_root,
    history_session,
)
from agentmem.chaos.session import chaos_session, fault_counts, outcomes_table
from agentmem.chaos.workload_faults import HistoryFault
from agentmem.memory import AgentMemoryError, leaves
from agentmem.orchestrator.sources import DEFAULT_TOPIC, PROJECT_SOURCES, load_sources


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentmem.chaos",
        description="Run the demo repeatedly while killing agents and stopping or crashing "
        "Redis and PostgreSQL; check every run against the invariants and a clean run. Uses "
        "local servers of its own (it must stop and start them) and the stub LLM.",
    )
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--seed", type=int, help="seed of the first run (default: random)")
    parser.add_argument("--writers", type=int, default=2, help="writing agents (default 2)")
    parser.add_argument(
        "--history",
        action="store_true",
        help="instead of the demo, run the history workload (locks, fenced writes, "
        "semaphores, handoffs) under faults and check each run's history",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="with --history: Redis is a local 3-primary + 3-replica Redis Cluster, and every "
        "run fails the namespace's primary over to a replica that missed its last writes",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="work time of a history run (default 8, 12 with --cluster)",
    )
    parser.add_argument(
        "--unsafe",
        choices=("nofence", "nolock", "steal"),
        default="",
        help="with --history, to see the checker catch it: clients write without fencing "
        "(nofence) or record leases they never took (nolock), or consumers take reclaimed "
        "entries back and ack them (steal); such runs are expected to have anomalies",
    )
    parser.add_argument(
        "--fault",
        action="append",
        choices=[f.value for f in HistoryFault],
        help="with --history: inject this fault in every run (repeatable; default: drawn)",
    )
    parser.add_argument(
        "--check", type=Path, metavar="DIR", help="check a kept history again and exit"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error(f"--runs must be 1 to 100, got {args.runs}")
    if not 1 <= args.writers <= 8:
        parser.error(f"--writers must be 1 to 8, got {args.writers}")
    if args.fault and not args.cluster and HistoryFault.CLUSTER_FAILOVER in args.fault:
        parser.error("--fault 'cluster failover' needs --cluster")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    console = Console()
    if args.check is not None:
        verdict = check_folder(args.check)
        run = args.check / "run.json"
        said = json.loads(run.read_text()) if run.exists() else {}
        faults = "; ".join(said.get("faults", [])) or "none landed"
        console.print(f"seed {said.get('seed', '?')}: {faults}", markup=False, soft_wrap=True)
        console.print(describe_verdict(verdict, args.check), markup=False, soft_wrap=True)
        return 0 if verdict.ok else 1
    if args.history:
        return history_main(args, console)
    try:
        settings = Settings()
    except ValidationError as exc:
        console.print(f"error: invalid configuration in the environment: {exc}", markup=False)
        return 2
    first = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    console.print(
        f"chaos: {args.runs} runs, seeds {first}..{first + args.runs - 1} "
        f"(repeat with --seed {first})"
    )
    docs = load_sources(PROJECT_SOURCES)
    started = time.monotonic()
    try:
        outcomes = anyio.run(
            lambda: chaos_session(
                settings,
                runs=args.runs,
                first_seed=first,
                writers=args.writers,
                topic=DEFAULT_TOPIC,
                sources=docs,
                console=console,
            )
        )
    except Exception as exc:
        inside = leaves(exc)
        if not all(isinstance(e, AgentMemoryError | OSError) for e in inside):
            raise
        console.print(f"error: {'; '.join(map(str, inside))}", markup=False)
        return 1
    console.print(outcomes_table(outcomes))
    counts = fault_counts(outcomes)
    kinds = ", ".join(f"{n} {fault}" for fault, n in sorted(counts.items())) or "none"
    console.print(
        f"{counts.total()} faults injected ({kinds}) in {time.monotonic() - started:.0f} s"
    )
    failed = [o.seed for o in outcomes if not o.ok]
    if failed:
        console.print(
            f"error: {len(failed)} of {args.runs} runs broke an invariant; seeds {failed}"
        )
        return 1
    console.print(f"all {args.runs} runs whole")
    return 0


def history_main(args: argparse.Namespace, console: Console) -> int:
    first = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    where = "a local Redis Cluster" if args.cluster else "one Redis server"
    unsafe = f", unsafe {args.unsafe}" if args.unsafe else ""
    root = history_root(cluster=args.cluster)
    console.print(
        f"chaos --history on {where}{unsafe}: {args.runs} runs, seeds {first}..."
        f"{first + args.runs - 1} (repeat with --seed {first}); histories in {root}/<seed>/"
    )
    seconds = args.seconds if args.seconds is not None else 12.0 if args.cluster else 8.0
    started = time.monotonic()
    outcomes = anyio.run(
        lambda: history_session(
            runs=args.runs,
            first_seed=first,
            seconds=seconds,
            faults=[HistoryFault(f) for f in args.fault] if args.fault else None,
            console=console,
            cluster=args.cluster,
            unsafe=args.unsafe,
        )
    )
    total = sum(o.verdict.ops.total() for o in outcomes if o.verdict is not None)
    console.print(f"{total} ops in {args.runs} runs, {time.monotonic() - started:.0f} s")
    failed = [o.seed for o in outcomes if not o.ok]
    if failed:
        console.print(f"error: {len(failed)} of {args.runs} runs have anomalies; seeds {failed}")
        return 1
    console.print(f"all {args.runs} histories check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
