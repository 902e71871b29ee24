"""What a tenant may see on ``agentmem serve``, and the record of what it did.

**Ownership.** A run belongs to the tenant that submitted it: the submission record in the
run's own namespace (:class:`memory.admission.Submissions`), written once when the run is
submitted and never by a client afterwards. :func:`visible` answers whether the request's
tenant (:func:`web.door.principal`) owns a run; every route that takes a run id asks it first,
and answers a run of another tenant exactly as a run that does not exist (404, the same text),
so a key cannot even learn which ids are taken. A run started with ``agentmem run`` (no
submission) belongs to no tenant: only a server without authentication shows it.

**Run ids.** With authentication, a run id a client chooses is only the idempotency key of its
submission: the run's id is derived from the tenant and that key (:func:`tenant_run_id`), so
two tenants choosing the same id make two runs, and no tenant can name another's.

**Audit.** :func:`audited` records an action (``submit``, ``requeue``) in the tenant's audit
log (:class:`memory.audit.AuditLog`) and as an ``audit.recorded`` event in the run's log:
the tenant and the key id, never the key.
"""

from __future__ import annotations

import hashlib

from agentmem.memory import Memory
from agentmem.memory.admission import Submissions
from agentmem.memory.audit import AuditLog, AuditRecord
from agentmem.memory.tenants import Principal
from agentmem.protocol import RUN_STREAM
from agentmem.protocol.events import AuditRecorded, EventType, new_event

SERVICE = "service"  # the agent id of audit events


async def visible(root: Memory, who: Principal | None, run_id: str) -> bool:
    """Whether ``who`` may see run ``run_id`` (anyone, when authentication is off)."""
    if who is None:
        return True
    return await Submissions(root.client).tenant_of(run_id) == who.tenant


def tenant_run_id(tenant: str, chosen: str) -> str:
    """The id of the run a tenant submitted with the id ``chosen`` (see the module's notes)."""
    digest = hashlib.sha256(f"{tenant}\0{chosen}".encode()).hexdigest()
    return f"run-{digest[:20]}"


async def audited(root: Memory, who: Principal | None, action: str, run_id: str) -> None:
    """Record that ``who`` (or, without authentication, someone local: no key id) did
    ``action`` to run ``run_id``: in its tenant's audit log and in the run's log."""
    key_id = None if who is None else who.key_id
    tenant = who.tenant if who is not None else await Submissions(root.client).tenant_of(run_id)
    tenant = tenant or "-"
    await AuditLog(root.db.pool).record(AuditRecord(tenant, key_id, action, run_id))
    payload = AuditRecorded(tenant=tenant, key_id=key_id, action=action, target=run_id)
    event = new_event(EventType.AUDIT_RECORDED, SERVICE, payload)
    await root.scope(run_id).events(RUN_STREAM).publish(event)
