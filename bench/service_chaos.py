"""The ``service`` suite's drain-and-kill measure: workers stopped at random during runs.

A pool of two workers per role serves runs from ``TENANTS`` tenants (stub LLM), ``runs`` of
them in flight (a new one is submitted as one ends) until the last round, then waits for all
of them. Meanwhile, ``rounds`` times each, a random live worker (any role) gets SIGTERM (it
drains and hands back what it holds) or SIGKILL (what it holds is reclaimed after the reclaim
timeout, 2 s here), alternately, and a new worker of its role is started once it has exited;
the next round comes once the new one's heartbeat is in Redis and a random pause (0.2 to
1 s) passed. Once every run ended, each is checked: it completed, and
:func:`chaos.invariants.run_problems` finds nothing (every section once in the report and
settled, every cited fact stored, as many facts as a clean run: no duplicate effect). Goal:
0 runs broken.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import anyio

from agentmem.agents.sentences import numbered, sentences
from agentmem.agents.stub_llm import extract
from agentmem.bench.harness import Figures
from agentmem.bench.service import (
    ROLES,
    TENANTS,
    bench_settings,
    start_worker,
    stop_workers,
)
from agentmem.chaos.invariants import run_problems
from agentmem.memory import MemoryConfig, open_memory
from agentmem.memory.connections import connect_redis
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES
from agentmem.orchestrator.sources import load_sources
from agentmem.service.submit import run_state, submit

PER_ROLE = 2


def drain_and_kill(env: dict[str, str], runs: int, rounds: int, tag: str) -> Figures:
    """See the module's notes; the figures and what broke."""
    env = {**env, "AGENTMEM_RECLAIM_IDLE_MS": "2000", "AGENTMEM_DRAIN_GRACE_SECONDS": "2"}
    workers: list[tuple[str, subprocess.Popen[bytes]]] = [
        (role, start_worker(env, role)) for role in ROLES for _ in range(PER_ROLE)
    ]
    killing = threading.Event()
    killing.set()
    stops: dict[str, int] = {"SIGTERM": 0, "SIGKILL": 0}
    rng = random.Random(os.environ.get("AGENTMEM_BENCH_CHAOS_SEED", "19"))
    submitted: list[str] = []
    load = os.getloadavg()[0]
    try:
        anyio.run(_until_live, env, [p.pid for _r, p in workers])
        started = time.monotonic()

        def keep_running() -> None:
            try:
                anyio.run(_keep_running, env, f"{tag}-run", runs, killing, submitted)
            finally:
                killing.clear()  # (the runs failed to finish: stop killing)

        waiter = threading.Thread(target=keep_running)
        waiter.start()
        for n in range(2 * rounds):
            if not waiter.is_alive():
                break
            sig = signal.SIGTERM if n % 2 == 0 else signal.SIGKILL
            index = rng.randrange(len(workers))
            role, victim = workers[index]
            os.kill(victim.pid, sig)
            victim.wait()
            stops[sig.name] += 1
            workers[index] = (role, start_worker(env, role))
            anyio.run(_until_live, env, [workers[index][1].pid])
            time.sleep(rng.uniform(0.2, 1.0))
        killing.clear()
        waiter.join()
        seconds = time.monotonic() - started
    finally:
        killing.clear()
        stop_workers([p for _r, p in workers])
    problems = anyio.run(_check, env, list(submitted))
    return {
        "runs": len(submitted),
        "workers_per_role": PER_ROLE,
        "sigterm": stops["SIGTERM"],
        "sigkill": stops["SIGKILL"],
        "runs_per_minute": len(submitted) / seconds * 60,
        "broken_runs": len({p.split(":", 1)[0] for p in problems}),
        "problems": problems[:20],
        "load_average_1min_at_start": load,
    }


async def _keep_running(
    env: dict[str, str], prefix: str, runs: int, killing: threading.Event, submitted: list[str]
) -> None:
    """Keep ``runs`` runs in flight (from ``TENANTS`` tenants) while ``killing`` is set, then
    wait until every submitted run ended; ``submitted`` lists them."""
    settings = bench_settings(env)
    docs = load_sources(PROJECT_SOURCES)
    ended: set[str] = set()
    async with open_memory(settings.memory_config(), "service", migrate=False) as root:
        with anyio.fail_after(1800):
            while True:
                while (killing.is_set() and len(submitted) - len(ended) < runs) or not submitted:
                    run_id = f"{prefix}-{len(submitted)}"
                    tenant = f"{prefix}-tenant-{len(submitted) % TENANTS}"
                    await submit(
                        root,
                        settings,
                        tenant=tenant,
                        topic=DEFAULT_TOPIC,
                        sources=docs,
                        run_id=run_id,
                    )
                    submitted.append(run_id)
                for run_id in set(submitted) - ended:
                    if (await run_state(root, run_id)).state in {"completed", "failed"}:
                        ended.add(run_id)
                if not killing.is_set() and len(ended) == len(submitted):
                    return
                await anyio.sleep(0.2)


async def _until_live(env: dict[str, str], pids: list[int]) -> None:
    """Return once each of ``pids`` has a heartbeat in Redis."""
    client = await connect_redis(MemoryConfig(redis_url=env["REDIS_URL"]))
    try:
        queues = [WorkQueue(client, role) for role in ROLES]
        with anyio.fail_after(300):
            while True:
                live = {w.pid for q in queues for w in await q.workers()}
                if set(pids) <= live:
                    return
                await anyio.sleep(0.2)
    finally:
        await client.aclose()


async def _check(env: dict[str, str], run_ids: list[str]) -> list[str]:
    """``run: problem`` for each run that did not complete whole."""
    sources = load_sources(PROJECT_SOURCES)
    expected = sum(
        len(
            extract(
                {"section_id": "x", "source": {"sentences": numbered(sentences(d.text))}}
            ).sentences
        )
        for d in sources
    )
    settings = bench_settings(env)
    problems: list[str] = []
    async with open_memory(settings.memory_config(), "service", migrate=False) as root:
        for run_id in run_ids:
            status = await run_state(root, run_id)
            if status.state != "completed" or status.report_path is None:
                problems.append(f"{run_id}: ended {status.state}: {status.error}")
                continue
            path = anyio.Path(status.report_path)
            record = json.loads(await path.with_suffix(".json").read_text())
            scope = root.scope(run_id)
            found = await run_problems(
                scope.memory,
                scope.db,
                report=await path.read_text(),
                record=record,
                sources=sources,
                expected_facts=expected,
            )
            problems += [f"{run_id}: {problem}" for problem in found]
    return problems
