"""``make bench``: the memory layer against the naive approach and the floor, in one run.

    python -m bench [--quick] [--only NAME ...] [--repeat N] [--out DIR]

Uses REDIS_URL / DATABASE_URL when set, else starts local servers. Prints a table, checks
the targets, and writes ``<out>/<timestamp>.json``, ``<out>/latest.json`` and a chart.
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

from bench import suites
from bench.report import chart, print_tables, targets
from memory.embedded import local_servers

DESCRIPTION = "Benchmark the memory layer against the naive approach and the round-trip floor."
NAMES = ("floor", "facts", "category", "handoffs", "locks", "documents", "demo")
console = Console(width=None if sys.stdout.isatty() else 150)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run only these benchmarks")
    parser.add_argument("--repeat", type=int, help="repetitions per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder")
    args = parser.parse_args()
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


async def run_all(
    redis_url: str, database_url: str, sizes: suites.Sizes, only: set[str], out: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    client = redis.Redis.from_url(redis_url)
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("floor", lambda: suites.floor(client, sizes)),
        ("facts", lambda: suites.facts_store(client, sizes)),
        ("category", lambda: suites.category_read(client, sizes)),
        ("handoffs", lambda: suites.handoffs(redis_url, sizes)),
        ("locks", lambda: suites.locks(client, sizes)),
        ("documents", lambda: suites.documents(database_url, sizes)),
    ]
    try:
        with console.status("benchmarking…") as status:
            for name, step in steps:
                if name in only:
                    status.update(f"benchmarking {name}…")
                    results[name] = await step()
                    console.print(f"[green]✓[/] {name}")
            if "demo" in only and sizes.demo:
                status.update("running the demo with the stub LLM…")
                results["demo"] = await anyio.to_thread.run_sync(
                    suites.demo, redis_url, database_url, out
                )
                console.print("[green]✓[/] demo")
    finally:
        await client.aclose()
    return results


def main() -> None:
    args = parse_args()
    sizes = suites.Sizes.quick() if args.quick else suites.Sizes()
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat)
    only = set(args.only or NAMES)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    with local_servers(os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")) as urls:
        results = anyio.run(run_all, urls.redis_url, urls.database_url, sizes, only, out)
    record = {
        "started": started.isoformat(),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "sizes": dataclasses.asdict(sizes),
        "results": results,
        "targets": targets(results),
    }
    print_tables(console, record)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(record, indent=2)
    (out / f"{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    chart_path = chart(results, out / "latest.png")
    console.print(f"results: {out / 'latest.json'}; chart: {chart_path}")


if __name__ == "__main__":
    main()
