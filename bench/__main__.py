"""``make bench``: the memory layer against the naive approach and the floor, in one run.

    python -m agentmem.bench [--quick] [--only NAME ...] [--repeat N] [--out DIR]

Uses REDIS_URL / DATABASE_URL when set, else starts local servers. Prints a table, checks
the targets (``bench/targets.py``: each met, or missed with its reason), and writes
``<out>/<timestamp>.json``, ``<out>/latest.json`` and ``<out>/latest.png``. Exits 1 if an
update was lost in the contended test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as redis
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from agentmem.bench import (
    documents,
    facts,
    floor,
    handoffs,
    locks,
    pipeline,
    scale,
    service,
    startup,
)
from agentmem.bench.harness import Context, Figures, Sizes
from agentmem.bench.report import chart, print_tables, targets
from agentmem.devservers import local_servers

DESCRIPTION = "Benchmark the memory layer against the naive approach and the round-trip floor."
Suite = Callable[[Context], Awaitable[Figures]]
SUITES: dict[str, Suite] = {
    "floor": floor.floor,
    "facts": facts.store,
    "category": facts.read_category,
    "handoffs": handoffs.handoffs,
    "locks": locks.locks,
    "documents": documents.documents,
    "scale": scale.scale,
    "startup": startup.startup,
    "service": service.service,
}
NAMES = (*SUITES, "demo")
# Run only when named (``--only service``): 160 whole runs take minutes, not for every bench.
OPT_IN = frozenset({"service"})
console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentmem.bench", description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=str(NAMES))
    parser.add_argument("--repeat", type=int, help="repetitions per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder")
    args = parser.parse_args()
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


async def run_all(
    redis_url: str, database_url: str, sizes: Sizes, only: list[str], out: Path
) -> Figures:
    results: Figures = {}
    client = redis.Redis.from_url(redis_url)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} benchmarks"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("starting", total=len(only))

            def say(text: str) -> None:
                progress.update(task, description=text)

            ctx = Context(redis_url, database_url, client, sizes, say)
            for name in only:
                if name == "demo":
                    say(f"demo: agentmem run with the stub LLM, {sizes.demo_runs} run(s)")
                    results[name] = await anyio.to_thread.run_sync(
                        pipeline.demo, redis_url, database_url, out, sizes.demo_runs
                    )
                else:
                    results[name] = await SUITES[name](ctx)
                progress.advance(task)
                console.print(f"[green]✓[/] {name}")
    finally:
        await client.aclose()
    return results


def main() -> None:
    args = parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat)
    default = [name for name in NAMES if name not in OPT_IN]
    only = [name for name in NAMES if name in (args.only or default)]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    with local_servers(os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")) as urls:
        results = anyio.run(run_all, urls.redis_url, urls.database_url, sizes, only, out)
    record: dict[str, Any] = {
        "started": started.isoformat(),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "servers": {
            "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
            "postgres": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
        },
        "sizes": dataclasses.asdict(sizes),
        "results": results,
        "targets": targets(results),
    }
    print_tables(console, record)
    text = json.dumps(record, indent=2)
    (out / f"{started:%Y%m%d-%H%M%S}.json").write_text(text)
    (out / "latest.json").write_text(text)
    chart_path = chart(results, out / "latest.png")
    console.print(f"results: {out / 'latest.json'}; chart: {chart_path}")
    if results.get("documents", {}).get("contended", {}).get("lost_updates"):
        console.print("[red]an update was lost in the contended test[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
