"""The MCP tools over the memory layer: facts, locks, versioned documents, events, status.

Every tool takes a ``namespace`` (a tenant, or a run), validated like every id
(:func:`memory.validate_id`) and turned into its own key prefix by :mod:`memory.keys`: a
client names a namespace, never a Redis key or a SQL row, so it cannot reach another
namespace's data through a crafted argument. A server may be limited to some namespaces
(``namespaces``); a call for another one is refused.

**Tenants.** On ``agentmem serve`` with authentication, each call is made as the tenant whose
key its HTTP request carried (:mod:`web.door`), and a namespace a client names is that
tenant's: ``notes`` of tenant ``acme`` is the namespace ``acme/notes``, and tenant names hold
no ``/``. Two tenants naming the same namespace reach two different ones, so no argument a
client sends can reach another tenant's facts, locks, documents, events or statuses. A
tenant's writes (``facts_store``, ``doc_write``, ``event_publish``) are recorded in its audit
log with the key id (:mod:`memory.audit`); locks and statuses, which expire, are not.

The server holds no state of its own between calls, so any number of server processes may
serve the same namespace, and what they promise is what the memory layer promises:

- **Facts** are appended atomically (one Lua script), with an optional idempotency key that
  makes a retried store return the first id.
- **Locks** are leases with a time to live. ``lock_acquire`` returns the lease's token (what
  ``lock_renew`` and ``lock_release`` must present) and a fencing token from PostgreSQL; the
  client renews the lease before its TTL runs out, and a client that goes away without
  releasing simply stops renewing, so its lease expires and the lock is free again.
- **Documents** are versioned; ``doc_write`` with ``expected_version`` fails with a
  ``ConflictError`` instead of overwriting a change the client has not seen, and with a
  ``fencing_token`` is refused once a newer lock holder has written the key.
- **Events** are appended to a Redis stream of the namespace and read back in order.

An error of the memory layer becomes a tool error (``isError``) whose text names the error
class and carries its one-line message, for example ``ConflictError: version conflict on
'counter': expected version 3, found 4; read the document again and retry the change``; the
SDK prefixes it with ``Error executing tool <name>:``. Anything else is reported by the SDK as
an unexpected error, without its text.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from agentmem.memory import (
    AgentEvent,
    AgentMemoryError,
    AgentStatus,
    Document,
    Fact,
    Lease,
    Memory,
    validate_id,
)
from agentmem.memory import __version__ as VERSION
from agentmem.memory.audit import AuditLog, AuditRecord
from agentmem.memory.tenants import Principal
from agentmem.web.door import principal

INSTRUCTIONS = """Shared memory for agents (agentmem): facts by category, leased locks with
fencing tokens, versioned JSON documents, event streams and agent status, each in a namespace
(a tenant or a run). Renew a lock before its ttl_seconds run out; pass its fencing_token to
doc_write. On a ConflictError from doc_write, read the document again and retry."""

MAX_LOCK_WAIT = 60.0  # seconds lock_acquire may wait for a held lock
MAX_READ_COUNT = 1000  # events events_read returns at most
_SCOPES_KEPT = 256  # namespaces whose stores are kept built
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@contextmanager
def memory_errors() -> Iterator[None]:
    """Turn an error of the memory layer into a tool error carrying its one-line message."""
    try:
        yield
    except AgentMemoryError as exc:
        message = " ".join(str(exc).split())
        msg = f"{type(exc).__name__}: {message}"
        raise ToolError(msg) from exc


class Namespaces:
    """The stores of each namespace a client names, on one :class:`~memory.Memory`'s
    connections (built once per namespace, for the most recent few hundred)."""

    def __init__(self, memory: Callable[[], Memory], allowed: frozenset[str] | None) -> None:
        self._memory = memory
        self._allowed = allowed
        self._scopes: OrderedDict[str, Memory] = OrderedDict()

    def __call__(self, namespace: str, ctx: Context | None = None) -> Memory:
        validate_id(namespace, "namespace")
        if self._allowed is not None and namespace not in self._allowed:
            msg = f"namespace {namespace!r} is not served here; this server serves " + ", ".join(
                sorted(self._allowed)
            )
            raise ToolError(msg)
        who = _caller(ctx)
        if who is not None:  # the tenant's own namespace of that name (see the module's notes)
            namespace = validate_id(f"{who.tenant}/{namespace}", "namespace")
        scope = self._scopes.get(namespace)
        if scope is None:
            scope = self._memory().scope(namespace)
            self._scopes[namespace] = scope
            if len(self._scopes) > _SCOPES_KEPT:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(namespace)
        return scope

    async def audit(self, ctx: Context | None, action: str, namespace: str, what: str) -> None:
        """Record a tenant's write in its audit log (nothing for stdio or without keys)."""
        who = _caller(ctx)
        if who is not None:
            record = AuditRecord(who.tenant, who.key_id, action, f"{namespace}:{what}")
            await AuditLog(self._memory().db.pool).record(record)


def create_server(
    memory: Callable[[], Memory], *, namespaces: frozenset[str] | None = None
) -> MCPServer[Any]:
    """An MCP server whose tools use the stores of ``memory()`` (called at each tool call, so
    the memory may be opened after the server is built); ``namespaces`` limits which
    namespaces clients may name (None: any)."""
    server: MCPServer[Any] = MCPServer(
        "agentmem", version=VERSION, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    scope = Namespaces(memory, namespaces)

    @server.tool()
    async def facts_store(
        namespace: str,
        agent_id: str,
        fact: str,
        category: str,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Store a fact under a category; returns its id. With an idempotency_key, storing
        again returns the first id and stores nothing."""
        with memory_errors():
            fact_id = await scope(namespace, ctx).memory.store_fact(
                agent_id, fact, category, metadata, idempotency_key=idempotency_key
            )
            await scope.audit(ctx, "fact.store", namespace, category)
        return {"id": fact_id}

    @server.tool()
    async def facts_read(
        namespace: str, category: str, ctx: Context | None = None
    ) -> dict[str, Any]:
        """Every fact of a category, oldest first."""
        with memory_errors():
            facts = await scope(namespace, ctx).memory.get_facts_by_category(category)
        return {"facts": [_fact(f) for f in facts]}

    @server.tool()
    async def facts_categories(namespace: str, ctx: Context | None = None) -> dict[str, Any]:
        """The categories that hold at least one fact, sorted."""
        with memory_errors():
            return {"categories": await scope(namespace, ctx).memory.list_categories()}

    @server.tool()
    async def lock_acquire(
        namespace: str,
        resource: str,
        agent_id: str,
        ttl_seconds: float = 30.0,
        wait_seconds: float = 0.0,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Take the lock on a resource for ttl_seconds, waiting up to wait_seconds (at most
        60) while another holder has it. Returns acquired, and when acquired the lease_token
        (for lock_renew and lock_release) and the fencing_token (for doc_write). Renew before
        ttl_seconds pass: a lease that is not renewed expires, and the lock is free again."""
        with memory_errors():
            memory = scope(namespace, ctx).memory
            lease = await memory.acquire_lock(resource, agent_id, ttl_seconds)
            with anyio.move_on_after(min(max(wait_seconds, 0.0), MAX_LOCK_WAIT)):
                delay = 0.01
                while lease is None:
                    await anyio.sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
                    delay = min(delay * 2, 0.2)
                    lease = await memory.acquire_lock(resource, agent_id, ttl_seconds)
        if lease is None:
            return {"acquired": False, "resource": resource}
        return {
            "acquired": True,
            "resource": resource,
            "agent_id": agent_id,
            "lease_token": lease.token,
            "fencing_token": lease.fencing_token,
            "ttl_seconds": lease.ttl_seconds,
        }

    @server.tool()
    async def lock_renew(
        namespace: str,
        resource: str,
        agent_id: str,
        lease_token: str,
        ttl_seconds: float = 30.0,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Reset the lease's time to live to ttl_seconds; renewed is false when the lease
        already expired or another holder has the lock (stop acting on its behalf)."""
        with memory_errors():
            lease = _lease(resource, agent_id, lease_token, ttl_seconds)
            return {"renewed": await scope(namespace, ctx).memory.extend_lock(lease)}

    @server.tool()
    async def lock_release(
        namespace: str, resource: str, agent_id: str, lease_token: str, ctx: Context | None = None
    ) -> dict[str, Any]:
        """Release the lock if this lease still holds it (never another holder's)."""
        with memory_errors():
            lease = _lease(resource, agent_id, lease_token, 30.0)
            return {"released": await scope(namespace, ctx).memory.release_lock(lease)}

    @server.tool()
    async def doc_read(
        namespace: str, key: str, version: int | None = None, ctx: Context | None = None
    ) -> dict[str, Any]:
        """The latest version of a document (or the given version); found is false if none."""
        with memory_errors():
            document = await scope(namespace, ctx).db.read(key, version)
        if document is None:
            return {"found": False, "key": key}
        return {"found": True, **_document(document)}

    @server.tool()
    async def doc_write(
        namespace: str,
        key: str,
        value: Any,
        agent_id: str,
        expected_version: int | None = None,
        fencing_token: int | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Append a new version of a document. expected_version: 0 only if it does not exist
        yet, n only if n is still the latest (else a ConflictError: read again and retry),
        omitted to write whatever the latest is. fencing_token: the one lock_acquire returned,
        for a key written under a lock."""
        with memory_errors():
            document = await scope(namespace, ctx).db.write(
                key, value, agent_id, expected_version, fencing_token=fencing_token
            )
            await scope.audit(ctx, "doc.write", namespace, f"{key}@{document.version}")
        return _document(document)

    @server.tool()
    async def doc_history(namespace: str, key: str, ctx: Context | None = None) -> dict[str, Any]:
        """Every version of a document, oldest first."""
        with memory_errors():
            versions = await scope(namespace, ctx).db.history(key)
        return {"versions": [_document(d) for d in versions]}

    @server.tool()
    async def event_publish(
        namespace: str,
        stream: str,
        event_type: str,
        agent_id: str,
        payload: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Append an event to a stream; returns its id. With an idempotency_key, publishing
        again returns the first id and appends nothing."""
        with memory_errors():
            event = _event(event_type, agent_id, payload or {})
            log = scope(namespace, ctx).events(stream)
            event_id = await log.publish(event, idempotency_key=idempotency_key)
            await scope.audit(ctx, "event.publish", namespace, stream)
        return {"event_id": event_id}

    @server.tool()
    async def events_read(
        namespace: str,
        stream: str,
        after: str = "0-0",
        count: int = 100,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Up to count (at most 1000) events of a stream after the event id `after` ("0-0":
        from the start), oldest first; pass the last one's id to read on."""
        with memory_errors():
            if not _ENTRY_ID.match(after):
                msg = f"after must be an event id such as 1700000000000-0, not {after[:40]!r}"
                raise ToolError(msg)
            log = scope(namespace, ctx).events(stream)
            events = await log.read_events(after, max(1, min(count, MAX_READ_COUNT)))
        return {"events": [_event_record(e) for e in events]}

    @server.tool()
    async def status_set(
        namespace: str,
        agent_id: str,
        status: str,
        detail: str = "",
        ttl_seconds: float = 15.0,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Say what an agent is doing; the status expires after ttl_seconds unless set
        again (a heartbeat)."""
        with memory_errors():
            memory = scope(namespace, ctx).memory
            return _status(await memory.set_agent_status(agent_id, status, detail, ttl_seconds))

    @server.tool()
    async def status_list(namespace: str, ctx: Context | None = None) -> dict[str, Any]:
        """Every agent whose status has not expired, sorted by id."""
        with memory_errors():
            statuses = await scope(namespace, ctx).memory.list_live_agents()
        return {"agents": [_status(s) for s in statuses]}

    return server


def _caller(ctx: Context | None) -> Principal | None:
    """The tenant an HTTP call was authenticated as (None: stdio, or no authentication)."""
    if ctx is None:
        return None
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    return None if scope is None else principal(scope)


def _lease(resource: str, agent_id: str, lease_token: str, ttl_seconds: float) -> Lease:
    validate_id(lease_token, "lease_token")
    return Lease(resource, validate_id(agent_id, "agent_id"), lease_token, None, ttl_seconds)


def _event(event_type: str, agent_id: str, payload: dict[str, Any]) -> AgentEvent:
    try:
        return AgentEvent(event_type=event_type, agent_id=agent_id, payload=payload)
    except ValueError as exc:  # pydantic's ValidationError: one line per problem
        problems = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        msg = f"not a valid event: {problems}"
        raise ToolError(msg) from exc


def _fact(fact: Fact) -> dict[str, Any]:
    return {
        "id": fact.id,
        "fact": fact.fact,
        "category": fact.category,
        "agent_id": fact.agent_id,
        "timestamp": fact.timestamp.isoformat(),
        "metadata": fact.metadata,
    }


def _document(document: Document) -> dict[str, Any]:
    return {
        "key": document.key,
        "value": document.value,
        "version": document.version,
        "agent_id": document.agent_id,
        "created_at": document.created_at.isoformat(),
        "fencing_token": document.fencing_token,
    }


def _event_record(event: AgentEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "agent_id": event.agent_id,
        "timestamp": event.timestamp.isoformat(),
        "payload": event.payload,
    }


def _status(status: AgentStatus) -> dict[str, Any]:
    return {
        "agent_id": status.agent_id,
        "status": status.status,
        "detail": status.detail,
        "updated_at": status.updated_at.isoformat(),
        "expires_at": status.expires_at.isoformat(),
    }
