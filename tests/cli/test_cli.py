"""The CLI refuses bad input with a clear message and a usage exit code, before starting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmem.cli.main import app
from agentmem.devservers import ServerUrls

runner = CliRunner()


def text(output: str) -> str:
    """The output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--writers", "0"], "--writers"),
        (["run", "--writers", "9"], "--writers"),
        (["run", "--llm", "gpt"], "--llm"),
        (["run", "--run-id", "bad\tid"], "control characters"),
        (["run", "--run-id", "x" * 300], "the limit is 256"),
        (["run", "--topic", "   "], "topic"),
        (["run", "--topic", "Redis\n# Injected heading"], "must be one line"),
        (["submit", "--topic", "a\tb"], "must be one line"),
        (["run", "--timeout", "0"], "--timeout"),
        (["inspect", "new\nline"], "control characters"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    """Each bad argument is named in the error, and nothing is started."""
    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert message in text(result.output)


def test_a_source_file_whose_name_is_not_one_line_is_refused_naming_it(tmp_path: Path) -> None:
    """A file name with a newline (legal on Linux) would put a line of its own in the report."""
    (tmp_path / "evil\n# Injected.md").write_text("Redis is fast.")

    result = runner.invoke(app, ["run", "--sources", str(tmp_path)])

    assert result.exit_code == 2
    assert "must be one line" in text(result.output)


def test_an_unusable_sources_folder_exits_2_naming_it(tmp_path: Path) -> None:
    """A sources folder without text files is refused before any server starts."""
    result = runner.invoke(app, ["run", "--sources", str(tmp_path)])

    assert result.exit_code == 2
    assert "no .md or .txt files" in text(result.output)
    assert "starting local" not in result.output


def test_invalid_environment_settings_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed AGENTMEM_ variable is reported by name."""
    monkeypatch.setenv("AGENTMEM_REVIEW_ROUNDS", "many")

    result = runner.invoke(app, ["run"])

    assert result.exit_code == 2
    assert "review_rounds" in text(result.output)


def test_help_describes_every_command() -> None:
    """--help lists the commands a user needs."""
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    for command in ("run", "inspect", "dead-letters", "requeue"):
        assert command in result.output


@pytest.mark.parametrize(
    ("redis_url", "database_url", "message"),
    [
        ("redis://127.0.0.1:1/0", None, "cannot reach Redis at redis://127.0.0.1:1/0"),
        (None, "postgresql://u:secret@127.0.0.1:1/db", "cannot reach PostgreSQL"),
    ],
)
def test_an_unreachable_server_fails_the_run_with_a_clear_message(
    servers: ServerUrls,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str | None,
    database_url: str | None,
    message: str,
) -> None:
    """A configured server that does not answer ends the run with exit 1, naming it."""
    monkeypatch.setenv("REDIS_URL", redis_url or servers.redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url or servers.database_url)

    result = runner.invoke(app, ["run", "--quiet"])

    assert result.exit_code == 1
    assert message in text(result.output)
    assert "secret" not in result.output


def test_a_worker_with_a_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad value in the environment is named once, and the exit is a usage error's."""
    monkeypatch.setenv("AGENTMEM_RUN_TIMEOUT_SECONDS", "-1")

    result = runner.invoke(app, ["worker", "writer"])

    assert result.exit_code == 2
    assert "run_timeout_seconds" in text(result.output)
    assert "Exit(" not in result.output
