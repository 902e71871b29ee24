"""``python -m agentmem.chaos`` itself: one seeded run with faults, checked, and nothing left
behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.orchestrator.runs import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_seeded_chaos_run_injects_faults_and_finds_the_run_whole() -> None:
    """Seed 5 stops and crashes Redis, crashes PostgreSQL, kills a writer; the run stays whole."""
    result = subprocess.run(
        [sys.executable, "-m", "agentmem.chaos", "--runs", "1", "--seed", "5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=280,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "clean run: 40 facts" in result.stdout
    assert re.search(r"seed 5: [1-9] faults", result.stdout)  # how many: until the run ends
    assert "PostgreSQL crashed" in result.stdout
    assert "all 1 runs whole" in result.stdout
