"""The benchmark harness runs end to end at tiny sizes, so it cannot rot (nothing is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {
    "floor",
    "facts",
    "category",
    "handoffs",
    "locks",
    "documents",
    "demo",
    "scale",
    "startup",
}


@pytest.mark.timeout(300)
def test_the_quick_bench_writes_every_section_and_a_chart(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """``python -m agentmem.bench --quick`` exits 0 and writes JSON with every section, and the
    chart."""
    env = {**os.environ, "REDIS_URL": servers.redis_url, "DATABASE_URL": servers.database_url}
    if os.environ.get("AGENTMEM_TEST_REDIS") == "cluster":
        del env["REDIS_URL"]  # the naive baseline is a standalone client: the bench starts one
    result = subprocess.run(
        [sys.executable, "-m", "agentmem.bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "latest.json").read_text())
    assert set(record["results"]) == SECTIONS
    assert "error" not in record["results"]["demo"], record["results"]["demo"]
    assert record["results"]["documents"]["contended"]["lost_updates"] == 0
    assert {"batch store vs naive (x)", "lost updates in the contended test"} <= {
        t["target"] for t in record["targets"]
    }
    assert (tmp_path / "latest.png").stat().st_size > 1000
