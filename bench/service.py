"""The ``service`` suite: runs per minute on a pool of workers against one process set per run.

``AGENTMEM_BENCH_SERVICE_RUNS`` runs (default 40) of the bundled sources from 4 tenants, stub
LLM with ``AGENTMEM_BENCH_SERVICE_DELAY`` s calls (default 0.3): on a pool of 1, 2 and 4
workers per role (research, writer, review, coordinator; started before the clock starts),
against the same number of ``agentmem run`` processes started 4 at a time. Goal (issue 19):
the pool at least 3x the per-run shape at equal worker count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

from bench.harness import Context, Figures
from orchestrator.defaults import PROJECT_SOURCES

ROLES = ("research", "writer", "review", "coordinator")
TENANTS = 4
AT_ONCE = 4  # agentmem run processes at a time


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def per_run(env: dict[str, str], runs: int, tag: str) -> float:
    """``runs`` ``agentmem run`` processes, ``AT_ONCE`` at a time; runs per minute."""
    started = time.monotonic()

    def one(n: int) -> None:
        done = _cli(env, "run", "--quiet", "--run-id", f"{tag}-run-{n}")
        if done.returncode != 0:
            msg = f"agentmem run failed: {done.stderr.strip()[-300:]}"
            raise RuntimeError(msg)

    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(one, range(runs)))
    return runs / (time.monotonic() - started) * 60


def pooled(env: dict[str, str], runs: int, workers: int, tag: str) -> float:
    """``runs`` submissions from ``TENANTS`` tenants to a pool of ``workers`` per role."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker", role, "--concurrency", "4"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for role in ROLES
        for _ in range(workers)
    ]
    try:
        time.sleep(3)  # the workers connect (not counted: they are long-lived)
        started = time.monotonic()
        ids = []
        for n in range(runs):
            run_id = f"{tag}-pool{workers}-{n}"
            done = _cli(env, "submit", "--tenant", f"tenant-{n % TENANTS}", "--run-id", run_id)
            if done.returncode != 0:
                msg = f"submit failed: {done.stderr.strip()}"
                raise RuntimeError(msg)
            ids.append(run_id)
        for run_id in ids:
            done = _cli(env, "wait", run_id, "--timeout", "900")
            if done.returncode != 0:
                msg = f"run {run_id} did not complete: {done.stderr.strip()}"
                raise RuntimeError(msg)
        return runs / (time.monotonic() - started) * 60
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


def measure(ctx: Context) -> Figures:
    runs = int(os.environ.get("AGENTMEM_BENCH_SERVICE_RUNS", "40"))
    delay = os.environ.get("AGENTMEM_BENCH_SERVICE_DELAY", "0.3")
    tag = f"bench-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="agentmem-service-") as tmp:
        env = {
            **os.environ,
            "REDIS_URL": ctx.redis_url,
            "DATABASE_URL": ctx.database_url,
            "AGENTMEM_DATA_DIR": str(Path(tmp) / "data"),
            "AGENTMEM_REPORTS_DIR": str(Path(tmp) / "reports"),
            "AGENTMEM_LLM": "stub",
            "AGENTMEM_STUB_DELAY_SECONDS": delay,
            "AGENTMEM_TENANT_MAX_INFLIGHT": str(runs),
            "AGENTMEM_TENANT_MAX_QUEUED": str(runs),
        }
        ctx.say(f"service: {runs} agentmem run processes, {AT_ONCE} at a time")
        figures: Figures = {
            "runs": runs,
            "stub_delay_seconds": float(delay),
            "sources": str(PROJECT_SOURCES),
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "per_run_runs_per_minute": per_run(env, runs, tag),
        }
        for workers in (1, 2, 4):
            ctx.say(f"service: {runs} runs on a pool of {workers} worker(s) per role")
            rate = pooled(env, runs, workers, tag)
            figures[f"pool_{workers}_runs_per_minute"] = rate
            figures[f"pool_{workers}_vs_per_run"] = rate / figures["per_run_runs_per_minute"]
    return figures


async def service(ctx: Context) -> Figures:
    """The suite's entry: :func:`measure` in a worker thread."""
    return await anyio.to_thread.run_sync(measure, ctx)
