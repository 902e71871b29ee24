"""Chaos and the run invariants: tooling around the application, beside ``bench/``.

``python -m agentmem.chaos`` (``make chaos``) runs the demo repeatedly while it kills agents
(SIGKILL) and stops or crashes Redis (SIGKILL) and PostgreSQL (immediate stop), then checks every
run against :mod:`chaos.invariants`, the same invariants the fault tests use.

:func:`chaos.checker.check` (``python -m agentmem.chaos.checker HISTORY...``) checks a history of
operations (:mod:`chaos.history`) the way Jepsen does: fencing tokens, leases, semaphores,
documents (linearizable: :mod:`chaos.linearizability`) and handoffs. It is not re-exported
here, so that ``python -m agentmem.chaos.checker`` runs a module not yet imported.

``python -m agentmem.chaos --history`` runs the history workload instead (:mod:`chaos.workload`:
processes that take locks, write fenced documents, hold semaphores and hand tasks off, each
recording what it was told) under the faults of :mod:`chaos.workload_faults` (a lock holder
paused past its TTL, a dropped reply, a partition, Redis restarted on older files, a full
write-ahead-log disk), and checks each history (:mod:`chaos.history_runs`).
"""

from agentmem.chaos.faults import Fault, agent_identity
from agentmem.chaos.invariants import run_problems
from agentmem.chaos.session import ChaosOutcome, chaos_session, fault_counts, outcomes_table

__all__ = [
    "ChaosOutcome",
    "Fault",
    "agent_identity",
    "chaos_session",
    "fault_counts",
    "outcomes_table",
    "run_problems",
]
