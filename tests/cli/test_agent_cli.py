"""``agentmem agent`` and the agent counts of ``agentmem run`` refuse bad input before starting."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentmem.cli.main import app
from tests.cli.test_cli import text

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
