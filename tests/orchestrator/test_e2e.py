"""The whole flow in separate processes: orchestrator, research, writers, review."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agentmem.agents.documents import draft_key
from agentmem.devservers import ServerUrls
from agentmem.memory.shared_db import SharedAgentDB
from tests.orchestrator.runs import (
    assert_run_is_whole,
    cli_env,
    finish,
    outcome,
    start_cli,
    wait_for_event,
    wait_until_gone,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("writers", [1, 2])
async def test_a_run_writes_a_complete_report_from_facts_in_its_sources(
    servers: ServerUrls, tmp_path: Path, writers: int
) -> None:
    """Every section once, citing real facts, revised and approved, LLM time counted."""
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    args = ("run", "--quiet", "--run-id", run_id, "--writers", str(writers))

    code, stdout, stderr = finish(start_cli(env, *args))

    assert code == 0, stderr[-3000:]
    out = outcome(stdout)
    await assert_run_is_whole(servers.redis_url, servers.database_url, run_id, out)
    types = [e["event_type"] for e in out.record["events"]]
    assert "section.revision_requested" in types
    assert types[0] == "run.requested"
    assert out.record["groundedness"]["ratio"] == 1.0  # the stub writes its facts verbatim
    assert "Groundedness: 40 of 40 sentences (100%)" in out.report
    calls = [e["payload"] for e in out.record["events"] if e["event_type"] == "llm.called"]
    assert {c["task"] for c in calls} == {"plan", "extract", "write", "review"}
    llm_seconds = out.record["timings_seconds"]["llm_by_agents"]
    assert 0 < llm_seconds <= sum(c["seconds"] for c in calls) + 1e-9
    done = await wait_for_event(
        servers.redis_url, run_id, lambda e: e.event_type == "run.completed"
    )
    assert done.payload["report_path"].endswith(f"{run_id}.md")
    async with await SharedAgentDB.connect(servers.database_url, run_id) as db:
        authors = {
            d.agent_id
            for s in out.record["sections"]
            for d in await db.history(draft_key(s["section_id"]))
        }
    assert authors <= {f"writer-{n}" for n in range(1, writers + 1)}
    assert wait_until_gone(run_id) == []

    first = out.record["sections"][0]["section_id"]
    code, shown, _ = finish(start_cli(env, "inspect", run_id, "--facts", "--section", first))
    assert code == 0
    assert "approved" in shown
    assert f"{first} version 2" in " ".join(shown.split())
    assert shown.count("[F") >= len(out.record["facts"])
    assert f"{len(calls)} LLM calls (" in " ".join(shown.split())

    code, forgotten, _ = finish(start_cli(env, "forget", run_id, "--yes"))
    assert code == 0
    assert "Redis keys and" in forgotten
    code, _, missing = finish(start_cli(env, "inspect", run_id))
    assert code == 1
    assert "has no events here" in " ".join(missing.split())
