"""Helpers for tests that run the whole system in processes and break things while it runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil

from agentmem.agents.sentences import numbered, sentences
from agentmem.agents.stub_llm import extract
from agentmem.chaos.faults import agent_identity
from agentmem.chaos.invariants import run_problems
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import MemoryConfig, connect_redis
from agentmem.memory.errors import StoreError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.shared_db import SharedAgentDB
from agentmem.orchestrator.sources import load_sources

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "sources"


def cli_env(redis_url: str, database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "AGENTMEM_DATA_DIR": str(tmp_path / "data"),
        "AGENTMEM_REPORTS_DIR": str(tmp_path / "reports"),
        "AGENTMEM_LLM": "stub",
        **extra,
    }


def default_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh checkout: no server URLs, the stub LLM."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    return {
        **env,
        "AGENTMEM_DATA_DIR": str(tmp_path / ".agentmem"),
        "AGENTMEM_REPORTS_DIR": str(tmp_path / "reports"),
        "AGENTMEM_LLM": "stub",
        **extra,
    }


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``agentmem`` in a process of its own; stdout and stderr captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "agentmem.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def finish(process: subprocess.Popen[str], timeout: float = 200) -> tuple[int, str, str]:
    """Wait for ``process``; past ``timeout`` it is killed (never left running) and the
    failure names the end of what it printed."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        msg = f"{process.args!r} still running after {timeout} s; it printed:\n{stdout[-3000:]}"
        raise AssertionError(msg) from None
    return process.returncode, stdout, stderr


async def wait_for_event(
    redis_url: str, run_id: str, accept: Callable[[AgentEvent], bool], within: float = 60
) -> AgentEvent:
    """The first event of the run's log that ``accept`` accepts (polling, so it rides outages)."""
    client = await connect_redis(MemoryConfig(redis_url=redis_url))
    store = EventStore(client, run_id, "run")
    try:
        with anyio.fail_after(within):
            while True:
                for event in await store.read_events(count=10_000):
                    if accept(event):
                        return event
                await anyio.sleep(0.05)
    finally:
        await client.aclose()


async def wait_until_taken(redis_url: str, run_id: str, role: str, within: float = 60) -> None:
    """Return once a worker of ``role`` holds a handoff of the run (pending in its group)."""
    client = await connect_redis(MemoryConfig(redis_url=redis_url))
    group = EventStore(client, run_id, "run").group(role, "observer", route=role)
    try:
        with anyio.fail_after(within):
            while True:
                with contextlib.suppress(StoreError):  # the group is not made yet
                    if (await group.pending_summary()).pending:
                        return
                await anyio.sleep(0.02)
    finally:
        await client.aclose()


def agent_processes(run_id: str, role: str | None = None) -> list[psutil.Process]:
    """Live agent processes of the run (optionally of one role)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        identity = agent_identity(proc.info["cmdline"] or [])
        if identity is None or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if identity[1] == run_id and (role is None or identity[0] == role):
            found.append(proc)
    return found


def all_processes_of(run_id: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if run_id in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def wait_until_gone(run_id: str, timeout: float = 15) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := all_processes_of(run_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def numbered_text(path: Path) -> str:
    """A source's sentences as the research agent sends them for extraction."""
    return numbered(sentences(path.read_text()))


def expected_fact_count() -> int:
    """How many facts a clean run stores from the bundled sources (the stub is deterministic)."""
    return sum(
        len(extract({"section_id": "x", "source": {"sentences": numbered_text(p)}}).sentences)
        for p in SOURCES.glob("*.md")
    )


@dataclass
class Outcome:
    report: str
    record: dict[str, Any]


def outcome(stdout: str) -> Outcome:
    path = Path(stdout.strip().splitlines()[-1].removeprefix("Report: "))
    return Outcome(path.read_text(), json.loads(path.with_suffix(".json").read_text()))


async def assert_run_is_whole(redis_url: str, database_url: str, run_id: str, out: Outcome) -> None:
    """The invariants of :func:`chaos.invariants.run_problems`, plus: every section approved."""
    assert len(out.record["sections"]) == len(list(SOURCES.glob("*.md")))
    assert all(s["state"] == "approved" for s in out.record["sections"])
    client = await connect_redis(MemoryConfig(redis_url=redis_url))
    db = await SharedAgentDB.connect(database_url, run_id)
    try:
        problems = await run_problems(
            RedisAgentMemory(client, run_id),
            db,
            report=out.report,
            record=out.record,
            sources=load_sources(SOURCES),
            expected_facts=expected_fact_count(),
        )
    finally:
        await db.close()
        await client.aclose()
    assert problems == []
