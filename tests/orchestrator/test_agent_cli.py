"""``agentmem agent`` and the agent counts of ``agentmem run`` refuse bad input before starting."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentmem.cli.main import app
from tests.orchestrator.test_cli import text

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--reviewers", "0"], "--reviewers"),
        (["run", "--researchers", "9"], "--researchers"),
        (["agent", "poet", "--run", "r"], "poet"),
        (["agent", "writer"], "--run"),
        (["agent", "writer", "--run", "r", "--instance", "0"], "--instance"),
    ],
)
def test_bad_agent_counts_and_roles_exit_2(args: list[str], message: str) -> None:
    """Each bad argument is named in the error."""
    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert message in text(result.output)


def test_joining_a_run_without_server_urls_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """agentmem agent starts no local servers: without both URLs it exits 2 naming them."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/db")

    result = runner.invoke(app, ["agent", "writer", "--run", "some-run"])

    assert result.exit_code == 2
    assert "REDIS_URL must be set to join a run" in text(result.output)
