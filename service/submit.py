"""Submitting runs to the pool, and asking how they are doing.

:func:`submit` records the submission once (the run id is its idempotency key: the given one,
or one derived from the submission's tenant, topic and sources, so the same submission twice
makes one run), asks the tenant's :class:`~memory.admission.Admission` whether it starts now,
waits, or is refused (:class:`~memory.errors.QueueFullError`, and the record is removed so it
can be tried again), and, when it starts, publishes its request and a ticket for research. It
returns at once: the workers do the rest. :func:`run_state` reads where a run is.

**Checked before anything.** The submission's ``run.requested`` event is built and checked
against the memory's limits (``Limits.event_payload_bytes``, ``AGENTMEM_MAX_EVENT_BYTES``)
before the submission is claimed or admitted: a request that could never be published is
refused with :class:`SubmissionTooLargeError` (HTTP 413) and leaves nothing behind, so the
same submission made smaller is a new one and is accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agentmem.agents.settings import Settings
from agentmem.memory import InvalidValueError, Memory, QueueFullError, validate_id
from agentmem.memory.admission import Admission, Submissions
from agentmem.memory.tenants import validate_tenant
from agentmem.memory.work_queue import WorkQueue
from agentmem.orchestrator.lifecycle import ORCHESTRATOR
from agentmem.protocol.events import EventType, RunRequested, SourceDoc, new_event
from agentmem.service.coordinator import start_run
from agentmem.service.routes import PoolRole

RunPhase = Literal["unknown", "queued", "running", "completed", "failed"]
SUBMITTER = "submitter"


class SubmissionTooLargeError(InvalidValueError):
    """A submission whose ``run.requested`` event would be larger than one event may be."""


@dataclass(frozen=True, slots=True)
class Submitted:
    run_id: str
    state: Literal["started", "queued", "duplicate"]


@dataclass(frozen=True, slots=True)
class RunStatus:
    run_id: str
    state: RunPhase
    tenant: str | None = None
    error: str | None = None
    report_path: str | None = None
    sections: int = 0
    approved: int = 0


def submission_key(tenant: str, topic: str, sources: Sequence[SourceDoc]) -> str:
    """A run id derived from what is submitted: the same submission gives the same id."""
    digest = hashlib.sha256()
    for part in (tenant, topic, *(f"{s.name}\0{s.text}" for s in sources)):
        digest.update(part.encode())
        digest.update(b"\1")
    return f"run-{digest.hexdigest()[:20]}"


def queues_of(root: Memory, settings: Settings) -> dict[str, WorkQueue]:
    """Every role's work queue, on the root's client."""
    return {
        role.value: WorkQueue(
            root.client, role.value, settings.pool_shards, reclaim_idle_ms=settings.reclaim_idle_ms
        )
        for role in PoolRole
    }


async def submit(
    root: Memory,
    settings: Settings,
    *,
    tenant: str,
    topic: str,
    sources: Sequence[SourceDoc],
    run_id: str | None = None,
    queues: Mapping[str, WorkQueue] | None = None,
) -> Submitted:
    """Submit a run to the pool; returns at once (see the module's notes)."""
    validate_tenant(tenant)  # one rule for tenants' names: those that can hold a key
    request = RunRequested(topic=topic, sources=list(sources))  # checked before anything
    check_publishable(root, request)
    run_id = validate_id(run_id or submission_key(tenant, topic, sources), "run id")
    admission = Admission(root.client, tenant)
    previous = await admission.claim(run_id)
    if previous is not None and await root.runs.get(run_id) is not None:
        return Submitted(run_id, "duplicate")  # it started already (and may have finished)
    admitted = await admission.admit(
        run_id,
        request.model_dump_json(),
        limit=settings.tenant_max_inflight,
        max_queued=settings.tenant_max_queued,
    )
    if admitted == "full":
        if previous is None:
            await admission.unclaim(run_id)
        inflight, waiting = await admission.counts()
        msg = (
            f"tenant {tenant!r} has {inflight} runs in flight and {waiting} waiting, its limit; "
            "submit again later"
        )
        raise QueueFullError(msg, retry_after=5.0)
    if admitted == "start":
        queues = queues or queues_of(root, settings)
        await start_run(root.scope(run_id), settings, queues, request, SUBMITTER, tenant=tenant)
    if admitted == "known":  # whoever's admission landed first made the run, and says so
        return Submitted(run_id, "duplicate")
    return Submitted(run_id, "started" if admitted == "start" else "queued")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024 / 1024:.1f} MB" if nbytes >= 1024 * 1024 else f"{nbytes} bytes"


def check_publishable(root: Memory, request: RunRequested) -> None:
    """Raise unless ``request`` can be published as the run's ``run.requested`` event under
    ``root``'s limits: :class:`SubmissionTooLargeError` (saying the cap and the size) if it
    is too large, :class:`~memory.errors.InvalidValueError` for any other reason."""
    event = new_event(EventType.RUN_REQUESTED, ORCHESTRATOR, request)
    cap = root.limits.event_payload_bytes
    size = len(json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")).encode())
    if size > cap:
        msg = (
            f"the run's request is {_size(size)} as JSON, over the cap of {_size(cap)} on one "
            "event (AGENTMEM_MAX_EVENT_BYTES); submit fewer or shorter sources"
        )
        raise SubmissionTooLargeError(msg)
    event.to_fields(root.limits)  # the rest of what publishing checks


async def run_state(root: Memory, run_id: str) -> RunStatus:
    """Where ``run_id`` is: queued, running, completed or failed (``unknown`` if no one
    submitted or ran it)."""
    validate_id(run_id, "run id")
    tenant = await Submissions(root.client).tenant_of(run_id)
    entry = await root.runs.get(run_id)
    if entry is None:
        return RunStatus(run_id, "queued" if tenant is not None else "unknown", tenant)
    return RunStatus(
        run_id,
        entry.state,
        tenant,
        error=entry.error,
        report_path=entry.report_path,
        sections=entry.sections,
        approved=entry.approved,
    )
