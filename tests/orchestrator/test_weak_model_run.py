"""A whole run against a scripted weak model (what SmolLM2-135M answered): the report is
still grounded, planned from every source, in several sections."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentmem.devservers import ServerUrls
from tests.agents.fake_openai_server import Answer, Script, completion, fake_openai, sent_input
from tests.orchestrator.runs import SOURCES, cli_env, finish, outcome, start_cli, wait_until_gone

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

LOOP = (
    "It allows you to use a Redis stream as a queue of Redis streams, which allows you to use "
    "a Redis stream as a queue of Redis streams."
)


def data(value: Any) -> Any:
    """The input with every quoted text replaced by the text itself."""
    if isinstance(value, dict):
        return value["data"] if "written_by" in value else {k: data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [data(v) for v in value]
    return value


def task_of(request: dict[str, Any]) -> str:
    return str(request["body"]["messages"][1]["content"].split("\n", 1)[0].removeprefix("Task: "))


def weak_model(request: dict[str, Any]) -> Answer:
    """Every source in one section with a looping id and an empty second section; three
    sentences of each source; a looping draft on one real citation; approval of anything."""
    task = task_of(request)
    given = data(sent_input(request).data)
    if task == "plan":
        names = [s["name"] for s in given["sources"]]
        looping = "01-redis-streams-streams-streams-streams"
        answer: dict[str, Any] = {
            "sections": [
                {"section_id": looping, "title": "Streams", "description": "", "sources": names},
                {"section_id": "locks", "title": "Locks", "description": "", "sources": []},
            ]
        }
    elif task == "extract":
        answer = {"sentences": [1, 2, 3]}
    elif task == "write":
        first = given["facts"][0]["id"]
        paragraph = {"text": LOOP, "citations": [first]}
        answer = {"title": given["section"]["title"], "paragraphs": [paragraph]}
    else:
        answer = {"approved": True, "comments": [], "unsupported": []}
    return completion(json.dumps(answer))


async def test_a_weak_models_run_is_grounded_covers_every_source_and_says_how(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Plan repaired, loops rejected, sections written from their facts, 100% supported."""
    run_id = f"weak-{uuid.uuid4().hex[:8]}"
    script = Script([], respond=weak_model)
    with fake_openai(script) as url:
        env = cli_env(
            servers.redis_url,
            servers.database_url,
            tmp_path,
            AGENTMEM_LLM="openai",
            OPENAI_BASE_URL=url,
            OPENAI_API_KEY="sk-test",
            AGENTMEM_REVIEW_ROUNDS="2",
        )
        code, stdout, stderr = finish(start_cli(env, "run", "--quiet", "--run-id", run_id))

    assert code == 0, stderr[-3000:]
    out = outcome(stdout)
    grounded = out.record["groundedness"]
    sections = out.record["sections"]
    sources = {f["metadata"]["source"] for f in out.record["facts"]}
    tasks = [task_of(r) for r in script.requests]

    assert len(sections) == len(list(SOURCES.glob("*.md")))
    assert sources == {p.name for p in SOURCES.glob("*.md")}
    assert grounded["ratio"] == 1.0
    assert all(s["extractive"] for s in grounded["sections"].values())
    assert "queue of Redis streams" not in out.report
    assert out.report.count("Written extractively from its facts, because its drafts") == 5
    assert "Groundedness: 15 of 15 sentences (100%)" in out.report
    assert "No facts were found" not in out.report
    assert sorted(set(tasks)) == ["extract", "plan", "write"]  # no review asked of the model
    assert tasks.count("write") == 2 * len(sections)  # two rounds, then the facts
    assert wait_until_gone(run_id) == []
