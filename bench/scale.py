"""Agent scale-out: one run on many sources with a slow (stub) LLM, at 1, 2, 4 and 8 writers
and reviewers (issue 10).

Each size runs ``agentmem run --llm stub --quiet --writers N --reviewers N`` as a child
process on sources made from the bundled ones (copied under new names and headings until
there are ``scale_sources``), with every stub LLM call taking ``scale_delay`` seconds. The
sizes are interleaved over the repetitions so that load on a shared machine hurts all alike.
The run record's events split each run into the part more agents cannot shorten (start-up,
planning and extraction: until the first section is handed to the writers) and the part they
share (writing and review: from the first handoff until the last section is settled).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from bench.harness import Context, Figures, Sample

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "sources"
SETTLED = {"section.approved", "section.round_limit"}


def make_sources(folder: Path, count: int) -> list[Path]:
    """``count`` source files from the bundled ones, each with its own name and first heading."""
    bundled = sorted(BUNDLED.glob("*.md"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        original = bundled[i % len(bundled)]
        copy, lines = i // len(bundled) + 1, original.read_text().splitlines()
        heading = next((n for n, line in enumerate(lines) if line.startswith("#")), None)
        if heading is not None:
            lines[heading] = f"{lines[heading]} (part {copy})"
        path = folder / f"{i + 1:02d}-{original.stem}-{copy}.md"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _command(sources: Path, agents: int) -> list[str]:
    script = Path(sys.executable).with_name("agentmem")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator.cli"]
    options = ["--llm", "stub", "--quiet", "--sources", str(sources)]
    return [*base, "run", *options, "--writers", str(agents), "--reviewers", str(agents)]


def phases(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from the request to the first section handoff, and from there to the last
    settled section, read from the run record's events."""
    at = [(e["event_type"], datetime.fromisoformat(e["timestamp"])) for e in events]
    start = at[0][1]
    assigned = min(t for kind, t in at if kind == "section.assigned")
    settled = max(t for kind, t in at if kind in SETTLED)
    return {
        "until_first_handoff": (assigned - start).total_seconds(),
        "writing_and_review": (settled - assigned).total_seconds(),
    }


def one_run(env: dict[str, str], sources: Path, agents: int) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one run with ``agents`` writers and reviewers, and its record."""
    started = time.perf_counter()
    result = subprocess.run(
        _command(sources, agents),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        msg = f"the run with {agents}+{agents} agents exited {result.returncode}: "
        raise RuntimeError(msg + result.stderr[-800:])
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("Report: "))
    return wall, json.loads(report.with_suffix(".json").read_text())


def measure(ctx: Context) -> Figures:
    """Every size, ``scale_repeat`` times, interleaved; medians and speedups against 1+1."""
    sizes = ctx.sizes
    walls: dict[int, Sample] = {n: Sample() for n in sizes.scale_agents}
    parts: dict[int, dict[str, Sample]] = {n: {} for n in sizes.scale_agents}
    with tempfile.TemporaryDirectory(prefix="agentmem-scale-") as tmp:
        folder = Path(tmp) / "sources"
        make_sources(folder, sizes.scale_sources)
        env = {
            **os.environ,
            "REDIS_URL": ctx.redis_url,
            "DATABASE_URL": ctx.database_url,
            "AGENTMEM_DATA_DIR": str(Path(tmp) / "data"),
            "AGENTMEM_REPORTS_DIR": str(Path(tmp) / "reports"),
            "AGENTMEM_STUB_DELAY_SECONDS": str(sizes.scale_delay),
        }
        for repetition in range(sizes.scale_repeat):
            for n in sizes.scale_agents:
                ctx.say(f"scale: {sizes.scale_sources} sources, {n}+{n} agents ({repetition + 1})")
                wall, record = one_run(env, folder, n)
                walls[n].values.append(wall)
                for name, seconds in phases(record["events"]).items():
                    parts[n].setdefault(name, Sample()).values.append(seconds)
    base = walls[sizes.scale_agents[0]].median
    shared = parts[sizes.scale_agents[0]]["writing_and_review"].median
    return {
        "sources": sizes.scale_sources,
        "stub_delay_seconds": sizes.scale_delay,
        "runs_per_size": sizes.scale_repeat,
        "by_agents": {
            str(n): {
                "wall_seconds": walls[n].as_dict(),
                "speedup": base / walls[n].median,
                "writing_and_review_speedup": shared / parts[n]["writing_and_review"].median,
                **{name: sample.as_dict() for name, sample in parts[n].items()},
            }
            for n in sizes.scale_agents
        },
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "note": (
            "N writers + N reviewers, 1 researcher; wall is the whole agentmem run (agent "
            "start-up included) against servers already up"
        ),
    }


async def scale(ctx: Context) -> Figures:
    """The scale benchmark, run in a worker thread (it waits on child processes)."""
    return await anyio.to_thread.run_sync(measure, ctx)


def why_missed(figures: Figures, agents: str) -> str:
    """Why ``agents``+``agents`` is not faster still: how much the part more agents share
    shrank, and how the part they cannot share grew with the number of processes started."""
    one, many = figures["by_agents"]["1"], figures["by_agents"][agents]
    fixed_1, fixed_n = one["until_first_handoff"]["median"], many["until_first_handoff"]["median"]
    shared_1, shared_n = one["writing_and_review"]["median"], many["writing_and_review"]["median"]
    processes = 2 * int(agents) + 1
    return (
        f"writing and review went from {shared_1:.1f} s to {shared_n:.1f} s "
        f"({shared_1 / shared_n:.1f}x) with {agents}+{agents} agents, but the time until the "
        f"first handoff (agent start-up, plan, extraction) went from {fixed_1:.1f} s to "
        f"{fixed_n:.1f} s: {processes} Python processes start at once on {figures['cpus']} "
        f"CPUs (load average {figures['load_average_1min']:.1f} at the end), each importing "
        "its libraries before the research agent can plan"
    )
