"""``agentmem run --quiet`` shows nothing while it runs, so it imports no terminal UI."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
import agentmem.agents.__main__, agentmem.cli.start, agentmem.orchestrator.lifecycle
from agentmem.orchestrator.progress import Progress
progress = Progress(None, quiet=True)
progress.message("not shown")
print("rich" in sys.modules)
"""


def test_a_quiet_run_imports_no_rich() -> None:
    """Everything a quiet run imports before it starts leaves rich out."""
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
