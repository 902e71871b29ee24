"""A pool of ``agentmem worker`` processes for tests, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.orchestrator.runs import ROOT

ROLES = ("research", "writer", "review", "coordinator")
AGENTMEM = (sys.executable, "-m", "agentmem.cli.main")


@dataclass
class Pool:
    env: dict[str, str]
    log_dir: Path
    workers: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(self, role: str, concurrency: int = 1) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        n = len(self.workers.get(role, []))
        log = (self.log_dir / f"{role}-{n}.log").open("ab")
        process = subprocess.Popen(
            [*AGENTMEM, "worker", role, "--concurrency", str(concurrency)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**self.env, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        log.close()
        self.workers.setdefault(role, []).append(process)
        return process

    def start_all(self, per_role: int = 1) -> None:
        for role in ROLES:
            for _ in range(per_role):
                self.start(role)

    def stop(self) -> None:
        """SIGTERM every live worker, then SIGKILL the ones still there after 20 s."""
        live = [p for ps in self.workers.values() for p in ps if p.poll() is None]
        for process in live:
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in live:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )
