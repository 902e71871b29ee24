"""The orchestrator: launches and supervises agent processes, shows progress, writes the report.

The ``agentmem`` command is :mod:`cli.main`; :func:`run_report` is the same run as a
library call, for embedding in another program. The names below are imported on first use
(PEP 562): ``agentmem --help`` imports none of the agents or the memory layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.orchestrator.launcher import AgentLauncher
    from agentmem.orchestrator.lifecycle import Run, RunFailedError, RunResult, run_report
    from agentmem.orchestrator.supervisor import AgentCrashedError, AgentSpec, Supervisor
    from agentmem.orchestrator.tracker import RunState, RunTracker

_HOMES = {
    "AgentCrashedError": "agentmem.orchestrator.supervisor",
    "AgentLauncher": "agentmem.orchestrator.launcher",
    "AgentSpec": "agentmem.orchestrator.supervisor",
    "Run": "agentmem.orchestrator.lifecycle",
    "RunFailedError": "agentmem.orchestrator.lifecycle",
    "RunResult": "agentmem.orchestrator.lifecycle",
    "RunState": "agentmem.orchestrator.tracker",
    "RunTracker": "agentmem.orchestrator.tracker",
    "Supervisor": "agentmem.orchestrator.supervisor",
    "run_report": "agentmem.orchestrator.lifecycle",
}

__all__ = [
    "AgentCrashedError",
    "AgentLauncher",
    "AgentSpec",
    "Run",
    "RunFailedError",
    "RunResult",
    "RunState",
    "RunTracker",
    "Supervisor",
    "run_report",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'orchestrator' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
