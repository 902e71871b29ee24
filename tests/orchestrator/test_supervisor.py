"""The supervisor restarts an agent that exits, with backoff, and gives up after a bound."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from agents.roles import Role
from orchestrator.supervisor import AgentCrashedError, AgentSpec, Supervisor

pytestmark = pytest.mark.anyio


class Crashing(Supervisor):
    """A supervisor whose agents are a one-line program that writes a line and exits 3."""

    def command(self, spec: AgentSpec) -> list[str]:
        return [sys.executable, "-c", "import sys; print('started', flush=True); sys.exit(3)"]


async def test_an_agent_that_keeps_exiting_is_restarted_then_reported(tmp_path: Path) -> None:
    """Each exit is announced and followed by a restart, until the bound makes it an error."""
    notes: list[str] = []
    supervisor = Crashing(
        "run-1", {}, tmp_path, max_restarts=3, first_backoff=0.01, notify=notes.append
    )

    with pytest.raises(ExceptionGroup) as caught, anyio.fail_after(30):
        await supervisor.run([AgentSpec(Role.WRITER, 2)])

    [error] = caught.value.exceptions
    assert isinstance(error, AgentCrashedError)
    assert "writer-2 exited 4 times (last exit code 3)" in str(error)
    assert notes == [
        f"writer-2 exited with code 3; restarting in {d:.1f} s" for d in (0.01, 0.02, 0.04)
    ]
    assert (tmp_path / "writer-2.log").read_text().count("started") == 4
