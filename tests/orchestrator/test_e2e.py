"""The whole flow in separate processes: orchestrator, research, writers, review."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as redis

from agents.documents import draft_key
from memory.agent_memory import RedisAgentMemory
from memory.embedded import ServerUrls
from memory.shared_db import SharedAgentDB

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "sources"


def run_cli(servers: ServerUrls, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REDIS_URL": servers.redis_url,
        "DATABASE_URL": servers.database_url,
        "AGENTMEM_DATA_DIR": str(tmp_path / "data"),
        "AGENTMEM_REPORTS_DIR": str(tmp_path / "reports"),
        "AGENTMEM_LLM": "stub",
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=240,
        check=False,
    )


def outputs(stdout: str) -> tuple[str, dict[str, Any]]:
    """The report and the run record whose path the CLI printed last."""
    report_path = Path(stdout.strip().splitlines()[-1].removeprefix("Report: "))
    record = json.loads(report_path.with_suffix(".json").read_text())
    return report_path.read_text(), record


def processes_of(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if run_id in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.mark.parametrize("writers", [1, 2])
async def test_a_run_writes_a_complete_report_from_facts_in_its_sources(
    servers: ServerUrls, tmp_path: Path, writers: int
) -> None:
    """Every planned section appears once, cites real facts, and was reviewed; nothing lingers."""
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    result = run_cli(
        servers, tmp_path, "run", "--quiet", "--run-id", run_id, "--writers", str(writers)
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report, record = outputs(result.stdout)
    sections = record["sections"]
    assert len(sections) == len(list(SOURCES.glob("*.md")))
    for section in sections:
        assert report.count(f"## {section['title']}\n") == 1
        assert section["state"] == "approved"

    client = redis.Redis.from_url(servers.redis_url)
    memory = RedisAgentMemory(client, run_id)
    cited = sorted({int(n) for n in re.findall(r"\[F(\d+)\]", report)})
    facts = await memory.get_facts(cited)
    await client.aclose()
    assert [f.id for f in facts] == cited
    sources = {path.name: path.read_text() for path in SOURCES.glob("*.md")}
    for fact in facts:
        assert fact.metadata["quote"] in sources[fact.metadata["source"]]
    assert len(record["facts"]) >= 20

    types = [e["event_type"] for e in record["events"]]
    for expected in (
        "run.requested",
        "run.planned",
        "section.drafted",
        "section.revision_requested",
    ):
        assert expected in types
    assert types.count("section.assigned") == len(sections)
    assert types.count("section.approved") == len(sections)

    db = await SharedAgentDB.connect(servers.database_url, run_id)
    histories = [await db.history(draft_key(s["section_id"])) for s in sections]
    await db.close()
    assert max(len(h) for h in histories) >= 2
    for history in histories:
        rounds = [d.value["round"] for d in history]
        assert rounds == sorted(set(rounds))  # one version per round: no duplicate writes
    if writers == 2:
        authors = {d.agent_id for h in histories for d in h}
        assert authors <= {"writer-1", "writer-2"}

    assert processes_of(run_id) == []
