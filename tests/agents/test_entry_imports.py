"""An agent process imports the agent code, not the development servers."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["agentmem.agents.__main__", "agentmem.agents.zygote"])
def test_the_agent_entry_points_leave_the_embedded_servers_out(module: str) -> None:
    """What ``python -m agentmem.agents`` and the zygote import brings in no ``devservers``
    module."""
    program = f"import sys, {module}; print(sorted(m for m in sys.modules if 'devservers' in m))"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout.strip() == "[]"
