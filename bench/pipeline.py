"""The whole demo with the stub LLM: wall time, and the time each handoff takes besides the LLM.

Runs ``agentmem run --llm stub --quiet`` as a child process against the benchmark's servers,
then reads the run record it writes. For every event an agent publishes in answer to another
(a draft, a review), the step time is measured from the later of its trigger (the previous
event of that section) and the agent's previous event to its publish: receipt through the
consumer group, reading facts and drafts, the (stub) LLM call, the versioned write, the
publish. The stub answers in microseconds, so step time is all non-LLM work.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agentmem.bench.harness import Figures, Sample

ROOT = Path(__file__).resolve().parent.parent
RESPONSES = {
    "section.drafted",
    "section.revision_requested",
    "section.approved",
    "section.round_limit",
}


def _command() -> list[str]:
    script = Path(sys.executable).with_name("agentmem")
    if script.exists():
        return [str(script), "run", "--llm", "stub", "--quiet"]
    return [sys.executable, "-m", "agentmem.cli.main", "run", "--llm", "stub", "--quiet"]


def demo(redis_url: str, database_url: str, out: Path, runs: int) -> Figures:
    """Run the demo ``runs`` times; wall time and per-handoff step time (non-LLM)."""
    if importlib.util.find_spec("agentmem.cli.main") is None:
        return {"skipped": "cli/main.py is not there yet: no demo to run"}
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "AGENTMEM_DATA_DIR": str(out / "demo-data"),
        "AGENTMEM_REPORTS_DIR": str(out / "demo-reports"),
    }
    walls: list[float] = []
    steps: list[float] = []
    record: dict[str, Any] = {}
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            _command(), env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
        )
        walls.append(time.perf_counter() - start)
        if result.returncode != 0:
            return {"error": f"exit {result.returncode}: {result.stderr[-800:]}"}
        report = Path(result.stdout.strip().splitlines()[-1].removeprefix("Report: "))
        record = json.loads(report.with_suffix(".json").read_text())
        steps += step_times(record["events"])
    return {
        "runs": runs,
        "wall_seconds": Sample(walls).as_dict(),
        "timings_seconds": record["timings_seconds"],
        "handoffs_per_run": len(steps) // runs,
        "step_ms": Sample([s * 1e3 for s in steps]).as_dict() if steps else None,
        "note": (
            "wall includes starting the agent processes; a step is one handoff answered: "
            "receipt, reads, stub LLM (microseconds), versioned write, publish"
        ),
    }


def _section(event: dict[str, Any]) -> str | None:
    payload = event["payload"]
    if "section_id" in payload:
        return str(payload["section_id"])
    section = payload.get("section")
    return str(section["section_id"]) if isinstance(section, dict) else None


def step_times(events: list[dict[str, Any]]) -> list[float]:
    """Seconds each answering event took its agent, queueing behind its other work excluded."""
    last_of_section: dict[str, datetime] = {}
    last_of_agent: dict[str, datetime] = {}
    steps: list[float] = []
    for event in events:
        at = datetime.fromisoformat(event["timestamp"])
        section = _section(event)
        agent = event["agent_id"]
        if section is not None and event["event_type"] in RESPONSES:
            before = [t for t in (last_of_section.get(section), last_of_agent.get(agent)) if t]
            if before:
                steps.append(max(0.0, (at - max(before)).total_seconds()))
        if section is not None:
            last_of_section[section] = at
        last_of_agent[agent] = at
    return steps
