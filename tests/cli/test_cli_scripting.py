"""A CLI that scripts: --json listings, whole run ids, a closed pipe, an unreachable server, a
taken port."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, finish, start_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def finished_run(
    servers: ServerUrls, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, str]]:
    """A run of the stub agents, finished; its id and the environment the CLI used."""
    run_id = f"script-{uuid.uuid4().hex[:8]}-with-a-long-id-{uuid.uuid4().hex[:8]}"
    env = cli_env(servers.redis_url, servers.database_url, tmp_path_factory.mktemp("script"))
    code, _, stderr = finish(start_cli(env, "run", "-q", "--run-id", run_id))
    assert code == 0, stderr[-2000:]
    return run_id, env


def test_runs_inspect_and_dead_letters_print_json_for_scripts(
    finished_run: tuple[str, dict[str, str]],
) -> None:
    """--json: runs and dead-letters one object per line, inspect one object; nothing else."""
    run_id, env = finished_run

    code, listing, stderr = finish(start_cli(env, "runs", "--json", "--limit", "1000"))
    assert code == 0, stderr
    runs = [json.loads(line) for line in listing.splitlines()]
    mine = next(r for r in runs if r["run_id"] == run_id)
    assert mine["state"] == "completed"
    assert mine["approved"] == mine["sections"] == 5

    code, shown, _ = finish(start_cli(env, "inspect", run_id, "--json", "--facts"))
    assert code == 0
    run = json.loads(shown)
    assert run["run_id"] == run_id
    assert [s["state"] for s in run["sections"]] == ["approved"] * 5
    assert len(run["fact_list"]) == run["facts"] > 0

    code, letters, _ = finish(start_cli(env, "dead-letters", run_id, "--json"))
    assert code == 0
    assert letters == ""  # no dead letters: no lines


def test_run_ids_are_never_wrapped_in_a_pipe_at_80_columns(
    finished_run: tuple[str, dict[str, str]],
) -> None:
    """`agentmem runs | cat` on an 80-column terminal: each run id whole on its own line."""
    run_id, env = finished_run

    code, listing, _ = finish(start_cli({**env, "COLUMNS": "80"}, "runs", "--limit", "1000"))

    assert code == 0
    [row] = [line for line in listing.splitlines() if run_id in line]
    assert "completed" in row


def test_a_reader_that_stops_reading_is_not_an_error(
    finished_run: tuple[str, dict[str, str]],
) -> None:
    """`inspect ... | head`: the closed pipe ends the command quietly, exit 0."""
    run_id, env = finished_run
    with start_cli(env, "inspect", run_id, "--facts", "--events", "--full") as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # before it writes anything: every write meets a closed pipe
        stderr = process.stderr.read()
        code = process.wait(timeout=120)

    assert code == 0, stderr
    assert stderr == ""


def test_an_unreachable_redis_is_said_at_once_with_how_long_the_run_waits(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """The first line names the server and the wait while the run still waits; the error
    after it is one line, without a stray full stop before its semicolon."""
    env = cli_env("redis://127.0.0.1:1", servers.database_url, tmp_path)
    process = start_cli(env, "run")
    assert process.stdout is not None
    line = ""
    for line in process.stdout:
        if "cannot reach Redis" in line:
            break
    still_waiting = process.poll() is None
    code, _, stderr = finish(process)

    assert "waiting up to 10 s" in line
    assert still_waiting
    assert code == 1
    [error] = [e for e in stderr.splitlines() if e.strip()]
    assert "cannot reach Redis at redis://127.0.0.1:1" in error
    assert ".;" not in error


def test_serve_on_a_taken_port_is_one_line_and_exit_1(servers: ServerUrls, tmp_path: Path) -> None:
    """No uvicorn ERROR line, no URL printed: one line naming the port, exit 1."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_cli(env, "serve", "--port", str(port))
        code, stdout, stderr = finish(process, timeout=60)

    assert code == 1
    assert stdout == ""
    [error] = [e for e in stderr.splitlines() if e.strip()]
    assert error.startswith("error: cannot listen on 127.0.0.1:")
    assert str(port) in error
    assert "--port" in error
