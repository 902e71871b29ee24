"""Start-up: ``agentmem --help``, an agent process from spawn to ready, and the whole demo with
servers it starts itself (issue 12).

- ``help``: wall seconds of ``agentmem --help`` (a child process, as a person runs it).
- ``agent_ready``: seconds from asking for an agent process until its log says ``ready on
  run`` (connected to Redis and PostgreSQL, instance claimed, consumer group made): forked
  from the zygote (what the orchestrator does) and as a new interpreter (``python -m
  agents``, what an agent joining from another host does); one agent alone, and nine at once
  (the 4+4 run's processes), the figure being the last of the nine to be ready.
- ``demo``: wall seconds of ``agentmem run`` with no REDIS_URL / DATABASE_URL (it starts the
  durable local servers, fsync on, in a data directory that one unmeasured run initialised
  first, as ``make demo`` after install does), split by the run record's event times into:
  until the run was requested (interpreter, imports, servers), agents starting (until the
  first agent event), the work, and after the last section (agents stopping, the report,
  servers stopping, exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.bench.harness import Context, Figures, Sample
from agentmem.orchestrator.launcher import AgentChild, AgentLauncher
from agentmem.protocol.roles import Role

ROOT = Path(__file__).resolve().parent.parent
SETTLED = {"section.approved", "section.round_limit"}
READY = b"ready on run"
HELP_GOAL, READY_GOAL, DEMO_GOAL = 0.3, 0.3, 1.5
_CROWD = ((Role.RESEARCH, 1), *((r, n) for r in (Role.WRITER, Role.REVIEW) for n in range(1, 5)))


def _agentmem() -> list[str]:
    script = Path(sys.executable).with_name("agentmem")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentmem.cli.main"]


def help_seconds(repeat: int) -> Sample:
    """Wall seconds of ``agentmem --help``, ``repeat`` times."""
    sample = Sample()
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([*_agentmem(), "--help"], capture_output=True, check=True, cwd=ROOT)
        sample.values.append(time.perf_counter() - started)
    return sample


def _ready_at(log: Path, deadline: float) -> float:
    """The wall-clock time of the agent's ``ready on run`` line in ``log``."""
    while time.monotonic() < deadline:
        for line in log.read_bytes().splitlines() if log.exists() else []:
            if READY in line:
                return datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
        time.sleep(0.01)
    msg = f"the agent did not become ready within the deadline; see {log}"
    raise TimeoutError(msg)


async def _forked(
    launcher: AgentLauncher, settings: Settings, logs: Path, agents: tuple[tuple[Role, int], ...]
) -> float:
    """Seconds until the last of ``agents`` forked from the zygote is ready."""
    run_id = f"startup-{uuid.uuid4().hex[:8]}"
    children: list[AgentChild] = []
    asked = time.time()
    try:
        for role, n in agents:
            log = logs / f"{run_id}-{role}-{n}.log"
            children.append(await launcher.launch(role, run_id, n, settings, log))
        deadline = time.monotonic() + 120
        ready = [
            await anyio.to_thread.run_sync(_ready_at, logs / f"{run_id}-{r}-{n}.log", deadline)
            for r, n in agents
        ]
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            await child.wait()
    return max(ready) - asked


def start_agent(
    env: dict[str, str], role: str, run_id: str, instance: int, log: Path
) -> subprocess.Popen[bytes]:
    """``python -m agentmem.agents ROLE --run-id RUN_ID --instance N`` as a new interpreter, its
    output in ``log`` (as an agent joining from another host would start)."""
    command = [
        sys.executable,
        "-m",
        "agentmem.agents",
        role,
        "--run-id",
        run_id,
        "--instance",
        str(instance),
    ]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def _spawned(env: dict[str, str], logs: Path, agents: tuple[tuple[Role, int], ...]) -> float:
    """Seconds until the last of ``agents`` started as ``python -m agentmem.agents`` is ready."""
    run_id = f"startup-{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen[bytes]] = []
    asked = time.time()
    try:
        for role, n in agents:
            log = logs / f"{run_id}-{role}-{n}.log"
            processes.append(start_agent(env, role.value, run_id, n, log))
        deadline = time.monotonic() + 120
        ready = [_ready_at(logs / f"{run_id}-{r}-{n}.log", deadline) for r, n in agents]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    return max(ready) - asked


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentmem-startup-") as tmp:
        yield Path(tmp)


async def agent_ready(ctx: Context, repeat: int) -> Figures:
    """Spawn-to-ready seconds, forked and as new interpreters, alone and nine at once."""
    with _scratch() as tmp:
        env = {
            **os.environ,
            "REDIS_URL": ctx.redis_url,
            "DATABASE_URL": ctx.database_url,
            "AGENTMEM_DATA_DIR": str(tmp / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        settings = Settings(
            redis_url=SecretStr(ctx.redis_url),
            database_url=SecretStr(ctx.database_url),
            data_dir=str(tmp / "data"),
        )
        logs = tmp / "logs"
        logs.mkdir()
        one = ((Role.WRITER, 1),)
        samples = {k: Sample() for k in ("forked", "interpreter", "forked_9", "interpreter_9")}
        with AgentLauncher.start(env) as launcher:
            await _forked(launcher, settings, logs, one)  # the zygote's imports: not measured
            for _ in range(repeat):
                ctx.say("start-up: one agent, forked and as a new interpreter")
                samples["forked"].values.append(await _forked(launcher, settings, logs, one))
                samples["interpreter"].values.append(
                    await anyio.to_thread.run_sync(_spawned, env, logs, one)
                )
                ctx.say("start-up: nine agents at once, forked and as new interpreters")
                samples["forked_9"].values.append(await _forked(launcher, settings, logs, _CROWD))
                samples["interpreter_9"].values.append(
                    await anyio.to_thread.run_sync(_spawned, env, logs, _CROWD)
                )
    return {k: s.as_dict() for k, s in samples.items()}


def _demo_once(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One ``agentmem run`` on local servers: wall seconds and its parts (see the module)."""
    asked = time.time()
    result = subprocess.run(
        [*_agentmem(), "run", "--llm", "stub", "--quiet"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    ended = time.time()
    if result.returncode != 0:
        msg = f"agentmem run exited {result.returncode}: {result.stderr[-800:]}"
        raise RuntimeError(msg)
    report = Path(result.stdout.strip().splitlines()[-1])
    record = json.loads(report.with_suffix(".json").read_text())
    at = [(e["event_type"], e["agent_id"], e["timestamp"]) for e in record["events"]]
    times = [(kind, agent, datetime.fromisoformat(ts).timestamp()) for kind, agent, ts in at]
    requested = min(t for kind, _, t in times if kind == "run.requested")
    first_agent = min(t for _, agent, t in times if agent != "orchestrator")
    settled = max(t for kind, _, t in times if kind in SETTLED)
    return {
        "wall": ended - asked,
        "until_requested": requested - asked,
        "agents_starting": first_agent - requested,
        "work": settled - first_agent,
        "after_last_section": ended - settled,
    }


def demo(repeat: int) -> Figures:
    """The demo's wall time and its parts, on durable local servers it starts itself."""
    with _scratch() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}} | {
            "AGENTMEM_DATA_DIR": str(tmp / "data"),
            "AGENTMEM_REPORTS_DIR": str(tmp / "reports"),
        }
        env.pop("DATABASE_READ_URL", None)
        _demo_once(env, tmp)  # initialises the servers' data (install does not): not measured
        parts: dict[str, Sample] = {}
        for _ in range(repeat):
            for part, seconds in _demo_once(env, tmp).items():
                parts.setdefault(part, Sample()).values.append(seconds)
    return {part: sample.as_dict() for part, sample in parts.items()}


async def startup(ctx: Context) -> Figures:
    """The start-up benchmark (issue 12's start-up targets)."""
    repeat = ctx.sizes.demo_runs
    ctx.say("start-up: agentmem --help")
    figures: Figures = {
        "help_seconds": (await anyio.to_thread.run_sync(help_seconds, repeat)).as_dict(),
        "agent_ready_seconds": await agent_ready(ctx, repeat),
    }
    ctx.say("start-up: the demo on local durable servers")
    figures["demo_seconds"] = await anyio.to_thread.run_sync(demo, repeat)
    figures["load_average_1min"] = os.getloadavg()[0]
    figures["cpus"] = os.cpu_count()
    return figures


def targets(figures: Figures) -> list[dict[str, Any]]:
    """The start-up targets: measured, goal, met, and why where missed."""
    load = f"load average {figures['load_average_1min']:.1f} on {figures['cpus']} CPUs"
    helped = figures["help_seconds"]["median"]
    ready = figures["agent_ready_seconds"]
    demo_parts = figures["demo_seconds"]
    wall = demo_parts["wall"]["median"]
    parts = ", ".join(
        f"{name.replace('_', ' ')} {demo_parts[name]['median']:.2f} s"
        for name in ("until_requested", "agents_starting", "work", "after_last_section")
    )
    rows = [
        (
            "agentmem --help (s)",
            helped,
            HELP_GOAL,
            f"the interpreter and typer alone take most of it ({load})",
        ),
        (
            "an agent forked from the zygote, spawn to ready (s)",
            ready["forked"]["median"],
            READY_GOAL,
            f"connecting to Redis and PostgreSQL and claiming the instance ({load}); as a new "
            f"interpreter it takes {ready['interpreter']['median']:.2f} s",
        ),
        (
            "nine agents forked at once, until the last is ready (s)",
            ready["forked_9"]["median"],
            READY_GOAL,
            f"nine processes connect on {figures['cpus']} CPUs ({load}); as new interpreters "
            f"the last is ready after {ready['interpreter_9']['median']:.2f} s",
        ),
        ("demo on local durable servers, wall (s)", wall, DEMO_GOAL, f"{parts} ({load})"),
    ]
    out = []
    for name, value, goal, why in rows:
        ok = value <= goal
        row: dict[str, Any] = {
            "target": name,
            "measured": round(value, 2),
            "goal": f"<= {goal}",
            "pass": ok,
        }
        out.append(row | ({} if ok else {"why": why}))
    return out
