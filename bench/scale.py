"""Agent scale-out: one run on many sources with a slow (stub) LLM, at 1, 2, 4 and 8 writers
and reviewers (issue 10).

Each size runs ``agentmem run --llm stub --quiet --writers N --reviewers N`` as a child
process on sources made from the bundled ones (copied under new names and headings until
there are ``scale_sources``), with every stub LLM call taking ``scale_delay`` seconds. The
sizes are interleaved over the repetitions so that load on a shared machine hurts all alike.
Each size is also run with the extra agents joined ahead, as agents on other hosts would be:
writers and reviewers 2..N are started with ``python -m agentmem.agents`` and are ready before the
run starts its own research-1, writer-1 and review-1, so the run starts as many processes as 1+1.
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
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from agentmem.bench.harness import Context, Figures, Sample
from agentmem.bench.startup import READY, start_agent
from agentmem.devservers.cluster import LocalCluster

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
    base = [str(script)] if script.exists() else [sys.executable, "-m", "agentmem.cli.main"]
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


def one_run(
    env: dict[str, str], sources: Path, agents: int, *, joined: bool = False
) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one run with ``agents`` writers and reviewers, and its record; with
    ``joined`` all but the first of each are started and ready before the run starts."""
    run_id = f"scale-{uuid.uuid4().hex[:8]}"
    ahead = _join(env, run_id, agents) if joined else []
    try:
        started = time.perf_counter()
        result = subprocess.run(
            [*_command(sources, 1 if joined else agents), "--run-id", run_id],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        wall = time.perf_counter() - started
        for process in ahead:  # they stop by themselves once run.completed is out
            process.wait(timeout=60)
    finally:
        for process in ahead:
            if process.poll() is None:
                process.kill()
                process.wait()
    if result.returncode != 0:
        msg = f"the run with {agents}+{agents} agents exited {result.returncode}: "
        raise RuntimeError(msg + result.stderr[-800:])
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("Report: "))
    return wall, json.loads(report.with_suffix(".json").read_text())


def _join(env: dict[str, str], run_id: str, agents: int) -> list[subprocess.Popen[bytes]]:
    """Writers and reviewers 2..``agents`` of ``run_id``, started; returns once all are ready."""
    logs = Path(env["AGENTMEM_DATA_DIR"]) / "joined" / run_id
    logs.mkdir(parents=True, exist_ok=True)
    processes, paths = [], []
    for role in ("writer", "review"):
        for n in range(2, agents + 1):
            path = logs / f"{role}-{n}.log"
            processes.append(start_agent(env, role, run_id, n, path))
            paths.append(path)
    deadline = time.monotonic() + 120
    for process, path in zip(processes, paths, strict=True):
        while READY not in path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                for started in processes:
                    started.kill()
                msg = f"joined agent {path.stem} did not become ready; see {path}"
                raise RuntimeError(msg)
            time.sleep(0.05)
    return processes


def measure(ctx: Context) -> Figures:
    """Every size, ``scale_repeat`` times, interleaved, with all agents started by the run and
    with the extra ones joined ahead; medians and speedups against 1+1."""
    sizes = ctx.sizes
    series = {"started_by_run": False, "joined_ahead": True}
    walls = {name: {n: Sample() for n in sizes.scale_agents} for name in series}
    parts: dict[str, dict[int, dict[str, Sample]]] = {
        name: {n: {} for n in sizes.scale_agents} for name in series
    }
    concurrent: Figures = {}
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
            for name, joined in series.items():
                for n in sizes.scale_agents:
                    if joined and n == 1:
                        continue  # the same as started_by_run
                    ctx.say(f"scale: {n}+{n} agents, {name} ({repetition + 1})")
                    wall, record = one_run(env, folder, n, joined=joined)
                    walls[name][n].values.append(wall)
                    for part, seconds in phases(record["events"]).items():
                        parts[name][n].setdefault(part, Sample()).values.append(seconds)
        if sizes.scale_concurrent_runs:
            concurrent = concurrent_runs(ctx, env, Path(tmp))
    one = sizes.scale_agents[0]
    walls["joined_ahead"][one], parts["joined_ahead"][one] = (
        walls["started_by_run"][one],
        parts["started_by_run"][one],
    )
    base = walls["started_by_run"][one].median
    shared = parts["started_by_run"][one]["writing_and_review"].median
    figures: Figures = {
        "sources": sizes.scale_sources,
        "stub_delay_seconds": sizes.scale_delay,
        "runs_per_size": sizes.scale_repeat,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "note": (
            "N writers + N reviewers, 1 researcher; wall is the whole agentmem run (agent "
            "start-up included) against servers already up; joined_ahead: writers and "
            "reviewers 2..N were started and ready before the run (as on other hosts)"
        ),
    }
    if concurrent:
        figures["concurrent_runs"] = concurrent
    for name in series:
        figures["by_agents" if name == "started_by_run" else "joined_by_agents"] = {
            str(n): {
                "wall_seconds": walls[name][n].as_dict(),
                "speedup": base / walls[name][n].median,
                "writing_and_review_speedup": shared / parts[name][n]["writing_and_review"].median,
                **{part: sample.as_dict() for part, sample in parts[name][n].items()},
            }
            for n in sizes.scale_agents
        }
    return figures


def runs_per_minute(env: dict[str, str], sources: Path, runs: int) -> float:
    """``runs`` runs (1+1 agents) started at once; how many of them would finish per minute."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*_command(sources, 1), "--run-id", f"concurrent-{uuid.uuid4().hex[:8]}"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(runs)
    ]
    failed = [p.communicate(timeout=600)[1] for p in processes if p.wait(timeout=600) != 0]
    if failed:
        msg = f"{len(failed)} of {runs} concurrent runs failed: {failed[0][-800:].decode()}"
        raise RuntimeError(msg)
    return runs / (time.perf_counter() - started) * 60


def concurrent_runs(ctx: Context, env: dict[str, str], tmp: Path) -> Figures:
    """Runs per minute with ``scale_concurrent_runs`` runs at once on the bundled sources: on the
    benchmark's Redis (one node) and on a local 3-primary + 3-replica cluster."""
    runs = ctx.sizes.scale_concurrent_runs
    ctx.say(f"scale: {runs} runs at once on one Redis node")
    one_node = runs_per_minute(env, BUNDLED, runs)
    ctx.say(f"scale: {runs} runs at once on a 3-node Redis Cluster (starting it)")
    with LocalCluster(tmp / "cluster") as cluster:
        on_cluster = runs_per_minute({**env, "REDIS_URL": cluster.url}, BUNDLED, runs)
    return {
        "runs_at_once": runs,
        "one_node_runs_per_minute": one_node,
        "cluster_runs_per_minute": on_cluster,
        "note": (
            "each run: the bundled sources, 1 writer + 1 reviewer, the stub LLM at the scale "
            "delay; every run's keys live in one hash slot, so the cluster spreads whole runs "
            "over its primaries; all processes share this machine's CPUs"
        ),
    }


async def scale(ctx: Context) -> Figures:
    """The scale benchmark, run in a worker thread (it waits on child processes)."""
    return await anyio.to_thread.run_sync(measure, ctx)


def why_missed(figures: Figures, agents: str, series: str = "by_agents") -> str:
    """Why ``agents``+``agents`` is not faster still: how much the part more agents share
    shrank, and how the part they cannot share changed with the number of processes."""
    one, many = figures["by_agents"]["1"], figures[series][agents]
    fixed_1, fixed_n = one["until_first_handoff"]["median"], many["until_first_handoff"]["median"]
    shared_1, shared_n = one["writing_and_review"]["median"], many["writing_and_review"]["median"]
    processes = 2 * int(agents) + 1 if series == "by_agents" else 3
    return (
        f"writing and review went from {shared_1:.1f} s to {shared_n:.1f} s "
        f"({shared_1 / shared_n:.1f}x) with {agents}+{agents} agents, but the time until the "
        f"first handoff (agent start-up, plan, extraction) went from {fixed_1:.1f} s to "
        f"{fixed_n:.1f} s ({processes} Python processes started by the run on "
        f"{figures['cpus']} CPUs, load average {figures['load_average_1min']:.1f} at the end); "
        "each handoff also costs CPU that the agents share on this machine"
    )
