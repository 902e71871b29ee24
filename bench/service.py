"""The ``service`` suite: runs per minute on a pool of workers against one process set per run.

``AGENTMEM_BENCH_SERVICE_RUNS`` runs (default 40) of the bundled sources from 4 tenants, stub
LLM with ``AGENTMEM_BENCH_SERVICE_DELAY`` s calls (default 0.3): on a pool of 1, 2 and 4
workers per role (research, writer, review, coordinator), against the same number of
``agentmem run`` processes started 4 at a time. Goal (issue 19): the pool at least 3x the
per-run shape at equal worker count.

More measures (``AGENTMEM_BENCH_SERVICE_PARTS``, default ``throughput,fairness,fold,chaos``):

- **fairness** (:func:`fairness`): three tenants submit ``AGENTMEM_BENCH_FAIRNESS_LIGHT_RUNS``
  runs each (default 2), alone and then right after one tenant submitted ten times as many;
  goal: their p95 from submission to completion at most 1.5x the same runs' p95 alone;
- **fold** (:mod:`bench.service_fold`): the coordinator's seconds and events read over one
  long synthetic run, its fold kept against a fold of the whole log per ticket;
- **drain and kill** (:mod:`bench.service_chaos`): ``AGENTMEM_BENCH_CHAOS_RUNS`` runs in
  flight (default 20) while ``AGENTMEM_BENCH_CHAOS_ROUNDS`` (10) random workers each get
  SIGTERM and SIGKILL;
  goal: every run completes whole (:func:`chaos.invariants.run_problems`), 0 broken.

The clock starts once every worker has sent its heartbeat (long-lived workers' start is not a
run's cost; on 2 busy cores 16 workers take tens of seconds to import, so a fixed pause let
their start into the figure). Runs are submitted and waited for in this process through the
library (:mod:`service.submit`, as ``POST /api/runs`` does), not one CLI process per call.
``AGENTMEM_BENCH_PROFILE=DIR`` records each worker with py-spy (``pip install py-spy``) into
``DIR``, in its raw (collapsed stacks) format (the throughput pools, and the fairness part's
shared phase, which also reports each worker's CPU seconds and Redis's calls per command).
``AGENTMEM_BENCH_SERVICE_SLOTS`` sets the workers' ``--concurrency`` (default 8: with 4, the
pool is bound by its handler slots, not by CPU; docs/service.md shows both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import redis
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.bench.harness import Context, Figures, percentile
from agentmem.memory import MemoryConfig, open_memory
from agentmem.memory.connections import connect_redis
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES
from agentmem.orchestrator.sources import load_sources
from agentmem.service.submit import run_state, submit

ROLES = ("research", "writer", "review", "coordinator")
TENANTS = 4
AT_ONCE = 4  # agentmem run processes at a time
SLOTS = "8"  # each worker's --concurrency


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", *args],
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


def pooled(env: dict[str, str], runs: int, workers: int, tag: str) -> tuple[float, list[float]]:
    """``runs`` submissions from ``TENANTS`` tenants to a pool of ``workers`` per role: runs per
    minute, and each run's seconds from its submission to its end."""
    processes = [start_worker(env, role) for role in ROLES for _ in range(workers)]
    profile = os.environ.get("AGENTMEM_BENCH_PROFILE")
    spies = []
    try:
        # the workers start (not counted: they are long-lived); on 2 busy cores 16 of them
        # take tens of seconds to import, so wait for every one's heartbeat, not a fixed time
        anyio.run(_until_ready, env, workers, processes)
        if profile:  # py-spy's samples of each worker, for finding where the time goes
            spies = [
                _spy(p.pid, Path(profile) / f"{tag}-{workers}-{i}.txt")
                for i, p in enumerate(processes)
            ]
        started = time.monotonic()
        latencies = anyio.run(_submit_and_wait, env, runs, f"{tag}-pool{workers}")
        return runs / (time.monotonic() - started) * 60, latencies
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait()
        stop_workers(processes)


def start_worker(env: dict[str, str], role: str) -> subprocess.Popen[bytes]:
    """An ``agentmem worker ROLE --concurrency N`` process (``AGENTMEM_BENCH_SERVICE_SLOTS``,
    default :data:`SLOTS`)."""
    slots = env.get("AGENTMEM_BENCH_SERVICE_SLOTS", SLOTS)
    return subprocess.Popen(
        [sys.executable, "-m", "agentmem.cli.main", "worker", role, "--concurrency", slots],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the live ones, and wait for all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait()


def fairness(env: dict[str, str], light_runs: int, tag: str) -> Figures:
    """Three light tenants' runs (``light_runs`` each) on a pool of one worker per role, alone
    and then behind a heavy tenant's ``10 * light_runs`` (submitted first); the light runs'
    p95 seconds from submission to completion in both, and their ratio (goal: at most 1.5)."""
    env = {**env, "AGENTMEM_TENANT_MAX_INFLIGHT": "4"}  # the default limit: part of fairness
    processes = [start_worker(env, role) for role in ROLES]
    try:
        anyio.run(_until_ready, env, 1, processes)
        lights = [f"{tag}-light-{i}" for i in range(3)]

        def plan(phase: str, heavy: int) -> list[tuple[str, str]]:
            runs = [(f"{tag}-{phase}-heavy-{n}", f"{tag}-heavy") for n in range(heavy)]
            for n in range(light_runs):
                runs += [(f"{tag}-{phase}-{tenant}-{n}", tenant) for tenant in lights]
            return runs

        load_alone = os.getloadavg()[0]
        alone = anyio.run(submit_and_wait, env, plan("alone", 0))
        load_shared = os.getloadavg()[0]
        profile = os.environ.get("AGENTMEM_BENCH_PROFILE")
        spies = [  # the shared phase only: where the light tenants' extra time goes
            _spy(p.pid, Path(profile) / f"{tag}-{role}.txt")
            for role, p in zip(ROLES, processes, strict=True)
            if profile
        ]
        calls_before, cpu_before = _redis_calls(env), [_cpu_seconds(p.pid) for p in processes]
        try:
            shared = anyio.run(submit_and_wait, env, plan("shared", 10 * light_runs))
            calls = _redis_calls(env) - calls_before
            cpu = [_cpu_seconds(p.pid) - b for p, b in zip(processes, cpu_before, strict=True)]
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait()
    finally:
        stop_workers(processes)
    light_alone = [seconds for run_id, seconds in alone.items() if "-light-" in run_id]
    light_shared = [seconds for run_id, seconds in shared.items() if "-light-" in run_id]
    heavy = [seconds for run_id, seconds in shared.items() if "-heavy-" in run_id]
    p95_alone, p95_shared = percentile(light_alone, 95), percentile(light_shared, 95)
    return {
        "light_runs_each": light_runs,
        "heavy_runs": 10 * light_runs,
        "light_p95_alone_seconds": p95_alone,
        "light_p95_with_heavy_seconds": p95_shared,
        "heavy_p95_seconds": percentile(heavy, 95),
        "light_p95_ratio": p95_shared / p95_alone,
        "load_average_1min_alone": load_alone,
        "load_average_1min_shared": load_shared,
        "redis_calls_shared": calls.total(),
        "redis_calls_shared_top": dict(calls.most_common(8)),
        "worker_cpu_seconds_shared": dict(zip(ROLES, cpu, strict=True)),
    }


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_calls(env: dict[str, str]) -> Counter[str]:
    """Redis's count of calls per command so far (``INFO commandstats``), on one server."""
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()})


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--format", "raw", "--nonblocking", "--pid", str(pid)]
    return subprocess.Popen([*command, "-o", str(out)], stderr=subprocess.DEVNULL)


async def _until_ready(
    env: dict[str, str], per_role: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Return once every role has ``per_role`` live workers (their heartbeats in Redis)."""
    client = await connect_redis(MemoryConfig(redis_url=env["REDIS_URL"]))
    try:
        queues = [WorkQueue(client, role) for role in ROLES]
        with anyio.fail_after(300):
            while True:
                if any(p.poll() is not None for p in processes):
                    msg = "a pool worker exited before it was ready"
                    raise RuntimeError(msg)
                live = [len(await q.workers()) for q in queues]
                if all(n >= per_role for n in live):
                    return
                await anyio.sleep(0.2)
    finally:
        await client.aclose()


async def _submit_and_wait(env: dict[str, str], runs: int, prefix: str) -> list[float]:
    """Submit ``runs`` runs in this process (the library, as ``POST /api/runs`` does) from
    ``TENANTS`` tenants and wait for each; returns each run's seconds from its submission to
    its end."""
    plan = [(f"{prefix}-{n}", f"tenant-{n % TENANTS}") for n in range(runs)]
    latencies = await submit_and_wait(env, plan)
    return [latencies[run_id] for run_id, _tenant in plan]


def bench_settings(env: dict[str, str]) -> Settings:
    """The settings of this process (a submitter), from the workers' environment."""
    return Settings(
        redis_url=SecretStr(env["REDIS_URL"]),
        database_url=SecretStr(env["DATABASE_URL"]),
        tenant_max_inflight=int(env["AGENTMEM_TENANT_MAX_INFLIGHT"]),
        tenant_max_queued=int(env["AGENTMEM_TENANT_MAX_QUEUED"]),
    )


async def submit_and_wait(
    env: dict[str, str], plan: list[tuple[str, str]], *, fail: bool = True
) -> dict[str, float]:
    """Submit each ``(run id, tenant)`` of ``plan`` in order and wait until every run ended;
    returns each completed run's seconds from its submission to its end. A failed run raises
    (``fail``), or is left out of the answer."""
    settings = bench_settings(env)
    docs = load_sources(PROJECT_SOURCES)
    config = settings.memory_config(client_name="agentmem:bench")
    ended: dict[str, float] = {}
    submitted: dict[str, float] = {}
    failed: set[str] = set()
    async with open_memory(config, "service", migrate=False) as root:
        for run_id, tenant in plan:
            submitted[run_id] = time.monotonic()
            await submit(
                root, settings, tenant=tenant, topic=DEFAULT_TOPIC, sources=docs, run_id=run_id
            )
        with anyio.fail_after(1800):
            while len(ended) + len(failed) < len(plan):
                for run_id in submitted.keys() - ended.keys() - failed:
                    status = await run_state(root, run_id)
                    if status.state == "failed":
                        if fail:
                            msg = f"run {run_id} failed: {status.error}"
                            raise RuntimeError(msg)
                        failed.add(run_id)
                    if status.state == "completed":
                        ended[run_id] = time.monotonic()
                await anyio.sleep(0.1)
    return {run_id: ended[run_id] - submitted[run_id] for run_id in ended}


def measure(ctx: Context) -> Figures:
    from agentmem.bench.service_chaos import drain_and_kill  # deferred: it imports this module
    from agentmem.bench.service_fold import fold_cost

    runs = int(os.environ.get("AGENTMEM_BENCH_SERVICE_RUNS", "40"))
    delay = os.environ.get("AGENTMEM_BENCH_SERVICE_DELAY", "0.3")
    parts = os.environ.get("AGENTMEM_BENCH_SERVICE_PARTS", "throughput,fairness,fold,chaos").split(
        ","
    )
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
            "AGENTMEM_TENANT_MAX_QUEUED": str(max(runs, 1000)),
        }
        figures: Figures = {
            "runs": runs,
            "stub_delay_seconds": float(delay),
            "sources": str(PROJECT_SOURCES),
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "slots_per_worker": int(env.get("AGENTMEM_BENCH_SERVICE_SLOTS", SLOTS)),
        }
        if "throughput" in parts:
            ctx.say(f"service: {runs} agentmem run processes, {AT_ONCE} at a time")
            figures["per_run_runs_per_minute"] = per_run(env, runs, tag)
            for workers in (1, 2, 4):
                ctx.say(f"service: {runs} runs on a pool of {workers} worker(s) per role")
                rate, latencies = pooled(env, runs, workers, tag)
                figures[f"pool_{workers}_runs_per_minute"] = rate
                figures[f"pool_{workers}_p50_seconds"] = percentile(latencies, 50)
                figures[f"pool_{workers}_p95_seconds"] = percentile(latencies, 95)
                figures[f"pool_{workers}_vs_per_run"] = rate / figures["per_run_runs_per_minute"]
        if "fairness" in parts:
            light = int(os.environ.get("AGENTMEM_BENCH_FAIRNESS_LIGHT_RUNS", "2"))
            ctx.say(f"service: fairness, 3 tenants x {light} runs, alone and behind {10 * light}")
            figures["fairness"] = fairness(env, light, f"{tag}-fair")
        if "fold" in parts:
            ctx.say("service: the coordinator's fold, kept against the whole log per ticket")
            figures["coordinator_fold"] = anyio.run(fold_cost, env, f"{tag}-fold")
        if "chaos" in parts:
            rounds = int(os.environ.get("AGENTMEM_BENCH_CHAOS_ROUNDS", "10"))
            chaos_runs = int(os.environ.get("AGENTMEM_BENCH_CHAOS_RUNS", "20"))
            ctx.say(f"service: {chaos_runs} runs, {rounds} SIGTERM and {rounds} SIGKILL")
            figures["drain_and_kill"] = drain_and_kill(env, chaos_runs, rounds, f"{tag}-chaos")
            figures["drain_and_kill"]["load_average_1min"] = os.getloadavg()[0]
    return figures


async def service(ctx: Context) -> Figures:
    """The suite's entry: :func:`measure` in a worker thread."""
    return await anyio.to_thread.run_sync(measure, ctx)
