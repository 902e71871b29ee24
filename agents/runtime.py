"""The loop every agent role shares: open the stores, heartbeat, take handoffs, run the handler.

A role is one async function ``handle(ctx, event)``. The runtime reads the role's route of the
run's stream (the handoffs to that role, ``ROUTES``) through the role's consumer group, calls
the handler for the event types the role acts on (``HANDLED_BY``), and acknowledges an entry
only after the handler returned, that is after its effect is durable. A failed entry is
retried on a later delivery and dead-lettered after ``max_deliveries``; a bad payload or an
LLM failure is final at once. Every final failure is published as an ``agent.failed`` event
so the person running the run sees it. An entry another worker reclaimed (this one stalled)
is dropped: its handler is cancelled, and it is neither acknowledged nor failed.

Before serving, an agent claims its role and instance number (:mod:`agents.instance`), so two
processes never act as one agent: it serves only while it holds that lease. The lease is
checked before each read, each write of a handler (through :class:`~agents.instance.LeasedWriter`
and :class:`~agents.instance.LeasedDB`) and each acknowledgement, and its loss cancels every
handler in flight at once (their entries stay pending, for whoever holds the lease); the agent
serves again once it holds the lease again. It serves until the run ends: on ``run.completed`` or
``run.failed`` (read from the run's end route, not through a group, so every instance sees
it) :func:`run_agent` returns a sentence saying so, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from pydantic import ValidationError

from agentmem.agents.idempotency import failed_key
from agentmem.agents.instance import (
    InstanceLease,
    InstanceLostError,
    LeasedDB,
    LeasedWriter,
    hold_instance,
)
from agentmem.agents.llm_base import LLM, LLMError
from agentmem.agents.llm_calls import LLM_SLOTS, SLOT_TTL_SECONDS, TimedLLM
from agentmem.agents.llm_choice import make_llm, uses_stub
from agentmem.agents.settings import Settings
from agentmem.memory import (
    AgentEvent,
    ConsumerGroup,
    Delivery,
    DeliveryLostError,
    Document,
    DurableWriter,
    EventStore,
    Fact,
    MemoryConfig,
    RedisAgentMemory,
    ServerUnavailableError,
    SharedAgentDB,
    WriteAheadLog,
    open_memory,
    path_part,
    retrying,
    telemetry,
)
from agentmem.protocol.events import (
    END_ROUTE,
    HANDLED_BY,
    ROUTES,
    RUN_ENDS,
    RUN_STREAM,
    AgentFailed,
    EventPayload,
    EventType,
    RunCompleted,
    RunFailed,
    new_event,
    parse_payload,
)
from agentmem.protocol.roles import Role

logger = logging.getLogger(__name__)

_RETRY_READ_SECONDS = 1.0

# How long a writer or reviewer waits for a section's facts that research stored but Redis
# does not show (lost in a failover, being resent from the researcher's write-ahead log).
FACTS_WAIT_SECONDS = 15.0


# A handler that meets an unreachable server is re-run (it is idempotent) within these bounds
# before its handoff is left pending for a later delivery.
# Waits stay short (at most a second), so work resumes within about a second of the server's
# return rather than after a long backoff.
_OUTAGE_ATTEMPTS = 200
_OUTAGE_SECONDS = 90.0
_OUTAGE_MAX_WAIT = 1.0


@dataclass(slots=True)
class Context:
    """What a handler works with: who it is, its settings, and the stores it may use."""

    agent_id: str
    role: Role
    settings: Settings
    memory: RedisAgentMemory
    events: EventStore
    db: SharedAgentDB
    llm: LLM
    durable: DurableWriter  # events and facts that must not be lost: logged locally, then sent
    state: str = "starting"
    detail: str = ""
    changed: anyio.Event = field(default_factory=anyio.Event)
    lease: InstanceLease | None = None  # None: no lease to check (a handler run by a test)
    # The run's state a handler keeps between events (one context per run, never shared by
    # runs): the research plan as last read or written (agents.research).
    plan: Document | None = None

    def check_lease(self) -> None:
        """Raise :class:`~agents.instance.InstanceLostError` unless this process holds its
        instance lease now: called before reading, acknowledging or failing an entry."""
        if self.lease is not None:
            self.lease.check()

    async def status(self, detail: str, state: str = "working") -> None:
        """Say what this agent is doing now. The heartbeat task publishes it at once, off the
        handler's path (a status is advisory: a handler does not wait for it, and two changes
        in quick succession are published as the last one), and repeats it until it changes."""
        self.state, self.detail = state, detail
        self.changed.set()

    async def beat(self) -> None:
        """Refresh this agent's status (and its TTL); an unreachable Redis is only logged.
        Nothing is published while the instance lease is lost (the status is the agent's)."""
        if self.lease is not None and self.lease.lost:
            return
        try:
            await self.memory.set_agent_status(
                self.agent_id,
                self.state,
                self.detail,
                ttl_seconds=self.settings.status_ttl_seconds,
            )
        except ServerUnavailableError as exc:
            logger.warning("cannot publish status %r: %s", self.state, exc)

    async def facts_of(self, category: str, expected: int = 0) -> list[Fact]:
        """A section's facts, once all ``expected`` of them are there (or after
        :data:`FACTS_WAIT_SECONDS`, with what there is, logged): after a Redis failover the
        facts its replica never got are missing until their researcher resends them, and a
        draft or review made from part of them would be wrong."""
        facts = await self.memory.get_facts_by_category(category)
        if len(facts) >= expected:
            return facts
        logger.info(
            "%s has %d of its %d facts; waiting for the rest", category, len(facts), expected
        )
        with anyio.move_on_after(FACTS_WAIT_SECONDS):
            while len(facts) < expected:
                await anyio.sleep(0.25)
                facts = await self.memory.get_facts_by_category(category)
        if len(facts) < expected:
            logger.warning(
                "%s has %d of its %d facts after %.0f s; going on with those",
                category,
                len(facts),
                expected,
                FACTS_WAIT_SECONDS,
            )
        return facts

    def event(self, event_type: EventType, payload: EventPayload) -> AgentEvent:
        """An event from this agent, ready to publish (its payload checked against its type)."""
        return new_event(event_type, self.agent_id, payload)


Handler = Callable[[Context, AgentEvent], Awaitable[None]]


async def run_agent(
    settings: Settings, role: Role, run_id: str, instance: int, handler: Handler
) -> str:
    """Open this agent's stores, claim its instance, then heartbeat and serve handoffs until
    the run ends (returns a sentence saying how it ended) or the caller cancels it."""
    agent_id = f"{role}-{instance}"
    config = agent_memory_config(settings, agent_id)
    ended = ""
    telemetry.name_process(agent_id)
    async with AsyncExitStack() as stack:
        # This process's span, in the run's trace when the orchestrator started it.
        stack.enter_context(
            telemetry.span(
                f"agent {agent_id}",
                {"gen_ai.agent.name": role.value, "gen_ai.agent.id": agent_id},
                parent=os.environ.get(telemetry.TRACEPARENT_ENV),
            )
        )
        # the servers may still be starting: wait for them a while
        m = await stack.enter_async_context(open_memory(config, run_id, wait=30.0))
        events = m.events(
            RUN_STREAM,
            max_deliveries=settings.max_deliveries,
            reclaim_idle_ms=settings.reclaim_idle_ms,
            routes=ROUTES,
        )
        lease = InstanceLease(agent_id)
        async with anyio.create_task_group() as outer:
            await outer.start(hold_instance, m.memory, agent_id, settings.lock_ttl_seconds, lease)
            wal = WriteAheadLog(
                Path(settings.data_dir) / "wal" / path_part(run_id) / f"{path_part(agent_id)}.db"
            )
            stack.callback(wal.close)
            writer = LeasedWriter(lease, m.memory, events, wal)
            llm = TimedLLM(
                make_llm(settings),
                agent_id,
                writer,
                slots=None  # the stub has no endpoint to protect
                if uses_stub(settings)
                else m.semaphore(
                    LLM_SLOTS, settings.llm_max_concurrency, ttl_seconds=SLOT_TTL_SECONDS
                ),
                queue_timeout=settings.llm_queue_timeout_seconds,
            )
            stack.push_async_callback(llm.aclose)
            db = LeasedDB(lease, m.db, config)
            ctx = Context(agent_id, role, settings, m.memory, events, db, llm, writer, lease=lease)
            group = events.group(
                role.value,
                agent_id,
                route=role.value,
                on_give_up=lambda event, why: _report_failure(ctx, event, why),
            )
            async for attempt in retrying(ServerUnavailableError, attempts=10, timeout=30.0):
                with attempt:
                    await group.ensure()
            logger.info("%s ready on run %s", agent_id, run_id)
            concurrency = settings.research_concurrency if role == Role.RESEARCH else 1
            try:
                async with anyio.create_task_group() as tg:

                    async def until_run_ends() -> None:
                        nonlocal ended
                        ended = await wait_for_run_end(events, run_id)
                        tg.cancel_scope.cancel()

                    tg.start_soon(until_run_ends)
                    await serve_while_held(ctx, lease, group, handler, concurrency)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    ctx.state, ctx.detail = "stopping", "shutting down"
                    await ctx.beat()  # the heartbeat task is gone: published here
            outer.cancel_scope.cancel()  # release the instance
    return ended


def agent_memory_config(settings: Settings, agent_id: str) -> MemoryConfig:
    """An agent's connections: named for it, and without the read replica (an agent reads the
    version it was handed, which only the primary is sure to have)."""
    return settings.memory_config(client_name=f"agentmem:{agent_id}", read_replica=False)


async def wait_for_run_end(events: EventStore, run_id: str) -> str:
    """Follow the run's end route (not through a group: every agent sees it) until the run
    ends."""
    last_id = "0-0"
    while True:
        try:
            async with aclosing(events.subscribe(last_id, route=END_ROUTE)) as log:
                async for event in log:
                    last_id = event.event_id or last_id
                    if event.event_type in RUN_ENDS:
                        return _ending(run_id, event)
        except ServerUnavailableError as exc:
            logger.warning(
                "cannot follow the run (%s); retrying in %.0f s", exc, _RETRY_READ_SECONDS
            )
            await anyio.sleep(_RETRY_READ_SECONDS)


def _ending(run_id: str, event: AgentEvent) -> str:
    """The sentence an agent ends with when it sees the run's last event."""
    try:
        payload = parse_payload(event)
    except (ValidationError, ValueError):
        return f"run {run_id} ended ({event.event_type}); stopping"
    if isinstance(payload, RunCompleted):
        return f"run {run_id} completed (report {payload.report_path}); stopping"
    if isinstance(payload, RunFailed):
        return f"run {run_id} failed ({payload.reason}); stopping"
    return f"run {run_id} ended ({event.event_type}); stopping"


async def serve_while_held(
    ctx: Context, lease: InstanceLease, group: ConsumerGroup, handler: Handler, concurrency: int
) -> None:
    """Heartbeat, send the local log's backlog and serve handoffs while this process holds its
    instance lease; once the lease is lost, stop all of it at once (handlers in flight are
    cancelled, their entries left pending) until the lease is held again."""
    while True:
        await lease.wait_held()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(heartbeat, ctx)
                tg.start_soon(ctx.durable.run)
                tg.start_soon(serve, ctx, group, handler, concurrency)
                await lease.wait_lost()
                tg.cancel_scope.cancel()
        except* InstanceLostError:  # a check saw the loss before the watcher did
            pass
        logger.warning(
            "lost the instance lease of %s: stopped taking, handing off and acknowledging "
            "work until it is held again",
            ctx.agent_id,
        )


async def heartbeat(ctx: Context) -> None:
    """Publish the status whenever it changes, and at least every ``heartbeat_seconds`` so it
    outlives its TTL while alive."""
    while True:
        ctx.changed = anyio.Event()  # a change from here on is published by the next round
        await ctx.beat()
        with anyio.move_on_after(ctx.settings.heartbeat_seconds):
            await ctx.changed.wait()


async def serve(ctx: Context, group: ConsumerGroup, handler: Handler, concurrency: int = 1) -> None:
    """Take handoffs, up to ``concurrency`` at a time, forever; a lost server is waited out.

    Each read asks for as many handoffs as there are free places (one round trip for twenty
    sources handed out at once), so a process never takes more than it starts at once."""
    slots = anyio.Semaphore(concurrency)
    busy = 0

    async def run_one(delivery: Delivery) -> None:
        nonlocal busy
        try:
            await process(ctx, group, delivery, handler)
        except ServerUnavailableError as exc:  # left pending: retried once the server is back
            logger.warning("lost a server during %s: %s", delivery.entry_id, exc)
        except InstanceLostError:  # left pending, for whoever holds the lease
            logger.warning("left %s pending: the instance lease is lost", delivery.entry_id)
        except DeliveryLostError as exc:  # another worker has it now: drop the work
            logger.warning("dropped %s: %s", delivery.entry_id, exc)
        finally:
            busy -= 1
            slots.release()

    async with anyio.create_task_group() as tg:
        while True:
            await slots.acquire()
            free = 1
            while slots.value > 0:  # take every free place: read that many at once
                slots.acquire_nowait()
                free += 1
            if busy == 0 and ctx.state != "idle":
                await ctx.status("waiting for work", state="idle")
            ctx.check_lease()  # never take work without the lease: raised to serve_while_held
            try:
                deliveries = await group.read(count=free, block_ms=1000)
            except ServerUnavailableError as exc:
                deliveries = []
                logger.warning("lost a server (%s); retrying in %.0f s", exc, _RETRY_READ_SECONDS)
                await anyio.sleep(_RETRY_READ_SECONDS)
            for _ in range(free - len(deliveries)):
                slots.release()
            for delivery in deliveries:
                busy += 1
                tg.start_soon(run_one, delivery)


async def process(ctx: Context, group: ConsumerGroup, delivery: Delivery, handler: Handler) -> None:
    """Run the handler for one delivery; ack on success, fail (retry or dead-letter) otherwise."""
    event = delivery.event
    ctx.check_lease()  # a delivery read just before the lease was lost is left pending
    if event.event_type not in HANDLED_BY[ctx.role]:
        await group.ack(delivery)
        return
    await ctx.status(f"handling {event.event_type} (attempt {delivery.attempts})")
    try:
        # A child of the span that published the handoff (in another process, most often).
        with telemetry.span(
            f"invoke_agent {ctx.role.value}",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": ctx.role.value,
                "gen_ai.agent.id": ctx.agent_id,
                "agentmem.event_type": event.event_type,
                "agentmem.entry_id": delivery.entry_id,
                "agentmem.attempt": delivery.attempts,
            },
            kind="consumer",
            parent=event.traceparent,
        ):
            await _run_claimed(ctx, group, delivery, handler)
    except ValidationError as exc:
        await _give_up(ctx, group, delivery, f"bad payload: {exc}")
    except LLMError as exc:
        await _give_up(ctx, group, delivery, f"LLM failed: {exc}")
    except Exception as exc:
        if isinstance(exc, ServerUnavailableError | InstanceLostError | DeliveryLostError):
            # left pending: retried once the server (or the lease) is back, or another
            # worker's now
            raise
        reason = f"{type(exc).__name__}: {exc}"
        logger.warning("%s %s failed: %s", event.event_type, delivery.entry_id, reason)
        ctx.check_lease()
        if await group.fail(delivery, reason):
            await _report_failure(ctx, event, reason)
    else:
        ctx.check_lease()
        await group.ack(delivery)


async def _run_claimed(
    ctx: Context, group: ConsumerGroup, delivery: Delivery, handler: Handler
) -> None:
    """Run the handler (re-run through server outages) while keeping its entry claimed; if
    another worker took the entry over, the handler is cancelled and DeliveryLostError raised."""
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def claim() -> None:
            nonlocal error
            try:
                await keep_claimed(ctx, group, delivery)
            except DeliveryLostError as exc:
                error = exc
                tg.cancel_scope.cancel()

        tg.start_soon(claim)
        try:
            async for attempt in retrying(
                ServerUnavailableError,
                attempts=_OUTAGE_ATTEMPTS,
                timeout=_OUTAGE_SECONDS,
                maximum=_OUTAGE_MAX_WAIT,
            ):
                with attempt:
                    await handler(ctx, delivery.event)
        except Exception as exc:  # re-raised below, outside the task group
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error


async def keep_claimed(ctx: Context, group: ConsumerGroup, delivery: Delivery) -> None:
    """While the handler runs, reset the entry's idle time so no other worker reclaims it."""
    interval = ctx.settings.reclaim_idle_ms / 3000
    while True:
        await anyio.sleep(interval)
        if ctx.lease is not None and ctx.lease.lost:
            return  # not kept claimed: the handler is being cancelled
        try:
            await group.touch(delivery)
        except ServerUnavailableError as exc:
            logger.warning("cannot keep %s claimed: %s", delivery.entry_id, exc)


async def _give_up(ctx: Context, group: ConsumerGroup, delivery: Delivery, reason: str) -> None:
    """Dead-letter a delivery that no retry can fix, and tell the user."""
    logger.error("%s %s failed for good: %s", delivery.event.event_type, delivery.entry_id, reason)
    ctx.check_lease()
    await group.fail(delivery, reason, final=True)
    await _report_failure(ctx, delivery.event, reason)


async def _report_failure(ctx: Context, event: AgentEvent, reason: str) -> None:
    failed = AgentFailed(role=ctx.role, step=event.event_type, error=reason[:2000])
    key = failed_key(ctx.role, event.event_id)
    await ctx.durable.publish(ctx.event(EventType.AGENT_FAILED, failed), idempotency_key=key)
