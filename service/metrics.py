"""The service's signals: backlog, oldest waiting handoff, slots, runs by state and tenant.

:func:`snapshot` reads them from Redis (every role's queue shards, the workers' heartbeats,
each tenant's admission counts, and the run index's recent entries); :func:`prometheus_text`
renders them in the Prometheus text format (``GET /metrics`` on ``agentmem serve``, for an
autoscaler: scale a role on ``agentmem_backlog``), and ``agentmem status`` prints them for a
person. Runs by state count the run index's newest entries (``RUNS_COUNTED``), split by the
tenant that submitted each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from agentmem.agents.settings import Settings
from agentmem.memory import Memory
from agentmem.memory.admission import Admission, Submissions
from agentmem.service.routes import PoolRole
from agentmem.service.submit import queues_of

RUNS_COUNTED = 1000


@dataclass(frozen=True, slots=True)
class RoleSignals:
    role: str
    backlog: int  # tickets not yet taken
    pending: int  # taken, not yet acknowledged
    oldest_seconds: float  # the oldest ticket waiting or pending
    workers: int
    busy: int
    free: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    roles: list[RoleSignals]
    tenants: dict[str, tuple[int, int]]  # tenant -> (in flight, waiting)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (state, tenant) -> n


async def snapshot(root: Memory, settings: Settings) -> Snapshot:
    """Every signal, read now."""
    roles = []
    for role, queue in queues_of(root, settings).items():
        shards = await queue.backlog()
        workers = await queue.workers()
        busy = sum(w.busy for w in workers)
        roles.append(
            RoleSignals(
                role=role,
                backlog=sum(s.waiting for s in shards),
                pending=sum(s.pending for s in shards),
                oldest_seconds=max((s.oldest_seconds for s in shards), default=0.0),
                workers=len(workers),
                busy=busy,
                free=sum(w.slots for w in workers) - busy,
            )
        )
    submissions = Submissions(root.client)
    tenants = {t: await Admission(root.client, t).counts() for t in await submissions.tenants()}
    runs: Counter[tuple[str, str]] = Counter()
    for entry in await root.runs.newest(RUNS_COUNTED):
        tenant = await submissions.tenant_of(entry.run_id)
        runs[entry.state, tenant or "-"] += 1
    for tenant, (_inflight, waiting) in tenants.items():
        if waiting:
            runs["queued", tenant] += waiting
    return Snapshot(roles, tenants, runs)


def prometheus_text(snap: Snapshot) -> bytes:
    """The snapshot in the Prometheus text exposition format."""
    registry = CollectorRegistry()
    backlog = Gauge(
        "agentmem_backlog", "Handoff tickets waiting to be taken", ["role"], registry=registry
    )
    pending = Gauge(
        "agentmem_pending", "Tickets taken, not yet acknowledged", ["role"], registry=registry
    )
    oldest = Gauge(
        "agentmem_oldest_waiting_seconds",
        "Age of the oldest waiting or pending ticket",
        ["role"],
        registry=registry,
    )
    workers = Gauge("agentmem_workers", "Live workers", ["role"], registry=registry)
    slots = Gauge("agentmem_slots", "Worker slots", ["role", "state"], registry=registry)
    runs = Gauge(
        "agentmem_runs", "Runs by state and tenant", ["state", "tenant"], registry=registry
    )
    inflight = Gauge(
        "agentmem_tenant_runs_in_flight", "A tenant's runs in flight", ["tenant"], registry=registry
    )
    for r in snap.roles:
        backlog.labels(r.role).set(r.backlog)
        pending.labels(r.role).set(r.pending)
        oldest.labels(r.role).set(r.oldest_seconds)
        workers.labels(r.role).set(r.workers)
        slots.labels(r.role, "busy").set(r.busy)
        slots.labels(r.role, "free").set(r.free)
    for (state, tenant), count in sorted(snap.runs.items()):
        runs.labels(state, tenant).set(count)
    for tenant, (flying, _waiting) in sorted(snap.tenants.items()):
        inflight.labels(tenant).set(flying)
    return generate_latest(registry)


def status_json(snap: Snapshot) -> dict[str, object]:
    """The snapshot as one JSON-ready object (``agentmem status --json``): the same figures
    as :func:`status_lines`, keyed by name."""
    return {
        "roles": [asdict(r) for r in snap.roles],
        "tenants": [
            {"tenant": t, "in_flight": f, "waiting": w}
            for t, (f, w) in sorted(snap.tenants.items())
        ],
        "runs": [{"state": s, "tenant": t, "count": n} for (s, t), n in sorted(snap.runs.items())],
    }


def status_lines(snap: Snapshot) -> list[str]:
    """The snapshot for a person: one line per role, per tenant, and the runs."""
    lines = ["role         backlog  pending  oldest   workers  busy  free"]
    for r in snap.roles:
        lines.append(
            f"{r.role:<12} {r.backlog:>7}  {r.pending:>7}  {r.oldest_seconds:>5.1f} s"
            f"  {r.workers:>7}  {r.busy:>4}  {r.free:>4}"
        )
    if snap.tenants:
        lines.append("")
        lines.append("tenant               in flight  waiting")
        lines += [f"{t:<20} {f:>9}  {w:>7}" for t, (f, w) in sorted(snap.tenants.items())]
    if snap.runs:
        lines.append("")
        lines.append("runs by state and tenant")
        lines += [f"  {s:<10} {t:<20} {n:>5}" for (s, t), n in sorted(snap.runs.items())]
    return lines


__all__ = [
    "PoolRole",
    "RoleSignals",
    "Snapshot",
    "prometheus_text",
    "snapshot",
    "status_json",
    "status_lines",
]
