"""The orchestrator: launches and supervises agent processes, shows progress, writes the report.

The ``agentmem`` command is :mod:`orchestrator.cli`; :func:`run_report` is the same run as a
library call, for embedding in another program.
"""

from orchestrator.run import RunFailedError, RunResult, run_report
from orchestrator.supervisor import AgentCrashedError, AgentSpec, Supervisor
from orchestrator.tracker import RunState, RunTracker

__all__ = [
    "AgentCrashedError",
    "AgentSpec",
    "RunFailedError",
    "RunResult",
    "RunState",
    "RunTracker",
    "Supervisor",
    "run_report",
]
