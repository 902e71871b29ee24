"""What a person sees from the CLI: the run list, a quiet run, inspect, dead letters, requeue."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, finish, start_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_finished_run_is_listed_inspected_and_reads_as_a_report(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """-q prints one line; the report cites 1..n in order, once; runs, inspect and resume say so."""
    run_id = f"view-{uuid.uuid4().hex[:8]}"
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)

    code, stdout, stderr = finish(start_cli(env, "run", "-q", "--run-id", run_id))

    assert code == 0, stderr[-3000:]
    assert stderr == ""
    assert len(stdout.splitlines()) == 1
    report_path = Path(stdout.strip())
    report = report_path.read_text()
    body = report.split("## Sources")[0]
    cited = list(dict.fromkeys(int(n) for n in re.findall(r"\[F(\d+)\]", body)))
    record = json.loads(report_path.with_suffix(".json").read_text())
    assert sorted(cited) == sorted(f["id"] for f in record["facts"])
    assert not re.search(r"\[\d+\]", body)  # one scheme: the fact's id, as inspect shows it
    assert all(report.count(f["fact"]) == 1 for f in record["facts"])
    for heading in ("## Introduction", "## Summary", "## Sources"):
        assert heading in report
    assert report.count("*Written by writer-1 in 2 versions") == len(record["sections"])
    assert 'class="llm"' in report_path.with_suffix(".html").read_text()

    code, listing, _ = finish(start_cli({**env, "COLUMNS": "200"}, "runs"))
    assert code == 0
    row = next(line for line in listing.splitlines() if run_id in line)
    assert "completed" in row
    assert "5/5" in row

    section = record["sections"][0]["section_id"]
    code, shown, _ = finish(start_cli(env, "inspect", run_id, "--section", section))
    assert code == 0
    assert "--- version 1" in shown
    assert "+++ version 2" in shown
    assert "revision requested" in shown
    assert "Not yet covered" in flat(shown)
    title = record["sections"][0]["title"]
    in_report = body.split(f"## {title}")[1].split("## ")[0]
    assert set(re.findall(r"\[F\d+\]", in_report)) <= set(re.findall(r"\[F\d+\]", shown))

    code, events, _ = finish(start_cli(env, "inspect", run_id, "--events"))
    assert code == 0
    assert "--full shows them" in flat(events)
    assert max(len(line) for line in events.splitlines()) < 2000

    code, again, _ = finish(start_cli(env, "run", "--run-id", run_id))
    assert code == 0
    assert f"resuming run {run_id}" in flat(again)


def test_unknown_runs_and_dead_letters_are_errors_that_say_what_to_do(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """dead-letters of an unknown run exits 1; requeue of an unknown id points to the listing."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)

    code, _, stderr = finish(start_cli(env, "dead-letters", f"nosuch-{uuid.uuid4().hex[:6]}"))
    assert code == 1
    assert "agentmem runs" in flat(stderr)

    code, _, stderr = finish(start_cli(env, "requeue", "nosuch", "1-0"))
    assert code == 1
    assert "agentmem dead-letters nosuch" in flat(stderr)
    assert "stream" not in stderr


def test_a_failed_run_says_why_and_that_no_report_was_written(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """A run that times out is listed as failed, and inspect gives the reason."""
    run_id = f"late-{uuid.uuid4().hex[:8]}"
    env = cli_env(
        servers.redis_url, servers.database_url, tmp_path, AGENTMEM_STUB_DELAY_SECONDS="5"
    )

    code, _, _ = finish(start_cli(env, "run", "-q", "--run-id", run_id, "--timeout", "2"))
    assert code == 1

    code, shown, _ = finish(start_cli(env, "inspect", run_id))
    assert code == 0
    assert "why the run failed" in shown
    assert "did not finish within 2 s" in flat(shown)
    assert "report: not written" in shown
    code, listing, _ = finish(start_cli({**env, "COLUMNS": "200"}, "runs"))
    assert "failed" in next(line for line in listing.splitlines() if run_id in line)
