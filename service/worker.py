"""``agentmem worker ROLE``: a long-lived worker that serves its role for every run.

**Queues.** Each role has a :class:`~memory.work_queue.WorkQueue` of ``pool_shards`` shards,
each in a hash slot of its own, so on a Redis Cluster the queues of all roles spread over the
primaries; a run is hashed to one shard of each role, and within a shard each tenant has a
lane. While a handler slot is free (``--concurrency`` of them), the worker's scheduler takes
the next ticket of the tenant it served least (:class:`~memory.work_queue.FairReader`); when
no lane has one, it waits for any shard's bell, on which a watcher per shard is blocked (one
XREAD each, a connection each), so a ticket pushed to any shard wakes it at once. The run's
own keys (its stream, routes, consumer groups, facts, drafts, locks) stay in the run's slot,
as in a run of its own process set.

**A ticket.** ``(run, route)`` says the run's route may hold a handoff for this role. The
worker opens the run's namespace scope for it (never a shared one: one run's handler sees only
that run's facts, drafts and locks), reads *one* handoff from the run's route through the run's
consumer group for the role (the memory layer's :class:`~memory.consumer.ConsumerGroup`, which
first reclaims handoffs a dead worker left idle), and runs the agent's handler on it exactly
as a per-run agent does (:func:`agents.runtime.process`: acknowledged after its effect,
retried, dead-lettered in the run's own dead letters after ``max_deliveries``, an
``agent.failed`` for the run's coordinator). A ticket that finds nothing (a duplicate, or
another worker took the handoff) is acknowledged. The ticket is kept claimed with its handoff
and acknowledged only once the handoff left the run's pending list; a handoff left pending for
a retry takes its ticket's idle time with it, so both become reclaimable together.

**Failure.** A SIGKILLed worker's tickets and handoffs stay pending; after ``reclaim_idle_ms``
any worker of the role reclaims the ticket, and its read of the run's route reclaims the
handoff. A poisoned handoff is dead-lettered for its run only; the worker goes on serving.
Writes a handler made while Redis was unreachable wait in the worker's local log for the run;
the worker flushes every open run's log that holds some each second (a run is not closed
while its log holds writes), and their handoffs' tickets go out once they are in the stream
(:class:`~service.routes.TicketingWriter`). A log its worker left behind (it was killed, or
exited with Redis down) is sent by another worker on the same ``<data_dir>``, at its start and
every reclaim interval (:mod:`service.adoption`).

**Ended runs.** A ticket of a run whose index entry says it ended (it timed out, or failed)
is acknowledged without being handled: the pool's slots go to runs still running. A
coordinator worker also sweeps the tenants' runs in flight every :data:`_SWEEP_SECONDS`
(:func:`service.coordinator.sweep`).

**Drain.** SIGTERM (or SIGINT) stops the worker from taking tickets; it lets the handlers in
flight finish for up to ``drain_grace_seconds``, then cancels the rest and hands back their
tickets and handoffs (their idle time set to the reclaim timeout, without counting a
delivery), so another worker takes them at once; then it sends its runs' local logs for up
to :data:`_EXIT_FLUSH_SECONDS`, and exits 0. A log it could not send (Redis down) stays on
disk for adoption, named in one warning line. Handlers are idempotent by their keys, so a
handler cut short and run again elsewhere has its effect once.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from agentmem.agents.idempotency import failed_key
from agentmem.agents.llm_base import LLM
from agentmem.agents.llm_calls import LLM_SLOTS, SLOT_TTL_SECONDS, TimedLLM
from agentmem.agents.llm_choice import make_llm, uses_stub
from agentmem.agents.runtime import Context, Handler, agent_memory_config, process
from agentmem.agents.settings import Settings
from agentmem.memory import (
    AgentEvent,
    AgentMemoryError,
    ConsumerGroup,
    Delivery,
    EventStore,
    Memory,
    ServerUnavailableError,
    WriteAheadLog,
    leaves,
    open_memory,
    retrying,
)
from agentmem.memory.admission import Submissions
from agentmem.memory.work_queue import DEFAULT_TENANT, Ticket, WorkQueue
from agentmem.protocol.events import AgentFailed, EventType
from agentmem.service.adoption import adopt_orphans, run_log_path
from agentmem.service.coordinator import RunFold, coordinate, run_events, sweep
from agentmem.service.routes import PoolRole, TicketingWriter

logger = logging.getLogger(__name__)

_RUNS_KEPT = 64  # run scopes a worker keeps open (the least recently used idle one goes)
_BLOCK_MS = 100  # the scheduler looks at ``draining`` at least this often
_WATCH_MS = 1_000  # a bell watcher's blocking read (it holds no state: cancelled at will)
_BEAT_SECONDS = 0.5
_BEAT_TTL_SECONDS = 10.0
_RETRY_SECONDS = 1.0
_SWEEP_SECONDS = 2.0  # the coordinator's pass over the runs in flight
_EXIT_FLUSH_SECONDS = 10.0  # what a stopping worker spends sending its runs' local logs


@dataclass(slots=True)
class RunScope:
    """One run as this worker serves it: its namespace scope, its stream, the agent context."""

    scope: Memory
    events: EventStore
    ctx: Context | None  # None for the coordinator
    wal: WriteAheadLog | None
    ensured: set[str] = field(default_factory=set)  # routes whose group exists
    fold: RunFold = field(default_factory=RunFold)  # the coordinator's state of the run
    users: int = 0


class Slots:
    """A worker's handler slots: the scheduler waits for a free one without taking it, then
    takes it for the ticket it found (it is the only taker, so the slot is still free)."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._freed = anyio.Event()

    async def until_free(self) -> None:
        while self.free <= 0:
            await self._freed.wait()

    def take(self) -> None:
        assert self.free > 0
        self.free -= 1

    def give(self) -> None:
        self.free += 1
        self._freed.set()
        self._freed = anyio.Event()


class Rung:
    """Set when any shard's bell rang since the scheduler last cleared it."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


def worker_name(role: PoolRole) -> str:
    """``<role>-<random>``: the worker's consumer name and the agent id on its events."""
    return f"{role}-{secrets.token_hex(3)}"


class Worker:
    """One worker process of ``role``: :meth:`run` serves tickets until ``draining`` is set,
    then drains (see the module's notes)."""

    def __init__(
        self,
        settings: Settings,
        role: PoolRole,
        root: Memory,
        handler: Handler | None,
        *,
        concurrency: int = 1,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.root = root
        self.handler = handler
        self.concurrency = concurrency
        self.name = name or worker_name(role)
        self.queues: dict[str, WorkQueue] = {
            r.value: WorkQueue(
                root.client, r.value, settings.pool_shards, reclaim_idle_ms=settings.reclaim_idle_ms
            )
            for r in PoolRole
        }
        self.queue = self.queues[role.value]
        self.weights = settings.weights()  # a malformed AGENTMEM_TENANT_WEIGHTS stops it here
        self.busy = 0
        self.served = 0  # tickets done (for logs and tests)
        self._idle = anyio.Event()
        self._runs: OrderedDict[str, RunScope] = OrderedDict()
        self._opening: dict[str, anyio.Lock] = {}  # runs being opened, by one task each
        self._llm: LLM | None = None
        self._next_shard = 0

    async def run(self, draining: anyio.Event) -> None:
        """Serve tickets until ``draining`` is set; then finish or hand back what is held."""
        async for attempt in retrying(ServerUnavailableError, attempts=30, timeout=60.0):
            with attempt:
                await self.queue.lanes()
        if self.role.agent_role is not None:
            self._llm = make_llm(self.settings)
        logger.info("%s serving %d shards of %s", self.name, self.queue.shards, self.role)
        slots = Slots(self.concurrency)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._beat)
                if self.role.agent_role is not None:
                    outer.start_soon(self._send_backlogs)
                    outer.start_soon(self._adopt_orphans)
                else:
                    outer.start_soon(self._sweep)
                async with anyio.create_task_group() as work:
                    await self._take_while(draining, slots, work)
                    if self.busy:
                        logger.info(
                            "%s draining: %d in flight, up to %.1f s",
                            self.name,
                            self.busy,
                            self.settings.drain_grace_seconds,
                        )
                        with anyio.move_on_after(self.settings.drain_grace_seconds):
                            await self._idle.wait()
                    work.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_runs()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await self.queue.leave(self.name)
                except AgentMemoryError as exc:
                    logger.warning("could not say %s left: %s", self.name, exc)
            close = getattr(self._llm, "aclose", None)
            if close is not None:
                await close()

    async def _take_while(
        self, draining: anyio.Event, slots: Slots, work: anyio.abc.TaskGroup
    ) -> None:
        """Take tickets while a slot is free, tenants in turn (:class:`FairReader`); when there
        is none, wait for any shard's bell (a watcher blocked on each). Returns on
        ``draining``."""
        rung = Rung()
        reader = self.queue.reader(self.name, weights=self.weights)
        async with anyio.create_task_group() as watchers:
            for shard in range(self.queue.shards):
                watchers.start_soon(self._watch, shard, rung)
            while not draining.is_set():
                with anyio.move_on_after(_BLOCK_MS / 1000):
                    await slots.until_free()
                if slots.free <= 0 or draining.is_set():
                    continue
                rung.clear()  # a push from now on wakes the wait below
                try:
                    taken = await reader.take()
                except ServerUnavailableError as exc:
                    logger.warning("lost a server (%s); retrying in %.0f s", exc, _RETRY_SECONDS)
                    await anyio.sleep(_RETRY_SECONDS)
                    continue
                if taken is None:
                    with anyio.move_on_after(_BLOCK_MS / 1000):
                        await rung.wait()
                    continue
                group, delivery = taken
                slots.take()
                self.busy += 1
                self._idle = anyio.Event()
                work.start_soon(self._one, group, delivery, slots)
            watchers.cancel_scope.cancel()  # an XREAD holds no state: cancelled freely

    async def _watch(self, shard: int, rung: Rung) -> None:
        """Ring ``rung`` whenever the shard's bell rings."""
        after = "$"
        while True:
            try:
                now = await self.queue.wait(shard, after, _WATCH_MS)
            except ServerUnavailableError:
                await anyio.sleep(_RETRY_SECONDS)
                continue
            if now != after:
                after = now
                rung.ring()

    async def _one(self, group: ConsumerGroup, delivery: Delivery, slots: Slots) -> None:
        try:
            await self._serve_ticket(group, delivery)
        except Exception as exc:  # one run's trouble never stops the worker, however raised
            inside = leaves(exc)  # a handler's errors come out of its task group, grouped
            if not all(isinstance(e, AgentMemoryError) for e in inside):
                raise
            if all(isinstance(e, ServerUnavailableError) for e in inside):  # left pending:
                lost = "; ".join(map(str, inside))  # reclaimed once the server is back
                logger.warning("lost a server during ticket %s: %s", delivery.entry_id, lost)
            else:
                failed = "; ".join(map(str, inside))
                logger.warning("ticket %s failed: %s", delivery.entry_id, failed)
        finally:
            slots.give()
            self.busy -= 1
            self.served += 1
            if self.busy == 0:
                self._idle.set()

    async def _serve_ticket(self, group: ConsumerGroup, delivery: Delivery) -> None:
        try:
            ticket = Ticket.of(delivery)
        except AgentMemoryError as exc:  # not a ticket: dead-lettered in the shard's letters
            await group.fail(delivery, str(exc), final=True)
            return
        if ticket.route != self.role.value:
            await group.ack(delivery)
            return
        run = await self._open(ticket.run_id)
        known = await run.scope.runs.get(ticket.run_id)
        if known is not None and known.state != "running":  # ended (timed out): nothing to do
            await group.ack(delivery)
            return
        run.users += 1
        try:
            entries = run.events.group(
                ticket.route,
                self.name,
                route=ticket.route,
                on_give_up=None if run.ctx is None else _reporter(run.ctx),
            )
            if ticket.route not in run.ensured:
                await entries.ensure()
                run.ensured.add(ticket.route)
            got = await entries.read(count=1, block_ms=1)
            if not got:
                await group.ack(delivery)
                return
            entry = got[0]
            await group.touch(delivery)  # the ticket is never idler than its handoff
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_claimed, group, delivery)
                    await self._handle(run, entries, entry)
                    tg.cancel_scope.cancel()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await _hand_back(entries, entry, group, delivery)
                raise
            idle = await entries.idle_ms(entry)
            if idle is None:  # done: acknowledged, or dead-lettered
                await group.ack(delivery)
            else:  # a retry is due: the ticket comes back with its handoff
                await group.set_idle(delivery, idle)
        finally:
            run.users -= 1

    async def _handle(self, run: RunScope, entries: ConsumerGroup, entry: Delivery) -> None:
        if run.ctx is not None:
            assert self.handler is not None
            await process(run.ctx, entries, entry, self.handler)
            await run.ctx.durable.flush()  # llm.called records go out with the handoff
            return
        try:
            await coordinate(run.scope, self.settings, self.queues, self.name, run.fold)
        except (ServerUnavailableError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:  # one run's failure never stops the worker
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("coordinating %s failed: %s", run.scope.namespace, reason)
            await entries.fail(entry, reason)
        else:
            await entries.ack(entry)

    async def _keep_claimed(self, group: ConsumerGroup, delivery: Delivery) -> None:
        """Touch the ticket while its handoff is handled (the runtime touches the handoff)."""
        interval = self.settings.reclaim_idle_ms / 3000
        while True:
            await anyio.sleep(interval)
            try:
                await group.touch(delivery)
            except ServerUnavailableError as exc:
                logger.warning("cannot keep ticket %s claimed: %s", delivery.entry_id, exc)

    async def _open(self, run_id: str) -> RunScope:
        """The run's scope, opened on first use and kept while recently used. One task opens
        it while the run's other tickets wait: two opens would both take the run's local log,
        whose lock the second would find held (by this very worker)."""
        run = self._runs.get(run_id)
        if run is not None:
            self._runs.move_to_end(run_id)
            return run
        opening = self._opening.setdefault(run_id, anyio.Lock())
        async with opening:
            run = self._runs.get(run_id)
            if run is None:
                run = await self._new_run(run_id)
                self._runs[run_id] = run
            if self._opening.get(run_id) is opening and not opening.statistics().tasks_waiting:
                del self._opening[run_id]
        await self._evict()
        return run

    async def _new_run(self, run_id: str) -> RunScope:
        """The run's scope, its agent context and its local log (closed again on failure)."""
        scope = self.root.scope(run_id)
        events = run_events(scope, self.settings)
        ctx, wal = None, None
        agent_role = self.role.agent_role
        if agent_role is not None:
            assert self._llm is not None
            wal_dir = Path(self.settings.data_dir) / "wal"
            path = await anyio.to_thread.run_sync(run_log_path, wal_dir, run_id, self.name)
            tenant = await Submissions(scope.client).tenant_of(run_id) or DEFAULT_TENANT
            wal = WriteAheadLog(path)  # after the last await that can fail: nothing leaks it
            writer = TicketingWriter(
                scope.memory, events, wal, self.queues, self.name, tenant=tenant
            )
            real = not uses_stub(self.settings)  # the stub has no endpoint to protect
            llm = TimedLLM(
                self._llm,
                self.name,
                writer,
                slots=scope.semaphore(
                    LLM_SLOTS, self.settings.llm_max_concurrency, ttl_seconds=SLOT_TTL_SECONDS
                )
                if real
                else None,
                tenant_slots=scope.tenant_semaphore(
                    tenant,
                    LLM_SLOTS,
                    self.settings.tenant_llm_max_concurrency,
                    ttl_seconds=SLOT_TTL_SECONDS,
                )
                if real
                else None,
                queue_timeout=self.settings.llm_queue_timeout_seconds,
            )
            ctx = Context(
                self.name, agent_role, self.settings, scope.memory, events, scope.db, llm, writer
            )
        return RunScope(scope, events, ctx, wal)

    async def _sweep(self) -> None:
        """The coordinator's pass over the tenants' runs in flight, every :data:`_SWEEP_SECONDS`
        (:func:`service.coordinator.sweep`: start what was not started, free what ended, fail
        what outlived its timeout)."""
        while True:
            try:
                await sweep(self.root, self.settings, self.queues, self.name)
            except Exception as exc:  # the sweep's trouble never stops the worker
                logger.warning("the sweep of runs in flight failed: %s", exc)
            await anyio.sleep(_SWEEP_SECONDS)

    async def _send_backlogs(self) -> None:
        """Every :data:`_RETRY_SECONDS`, flush the local log of each open run that still holds
        writes (Redis was unreachable when they were made): its handoffs reach the stream,
        and get their tickets, without waiting for another of the run's tickets here."""
        while True:
            await anyio.sleep(_RETRY_SECONDS)
            for run_id, run in list(self._runs.items()):
                if run.ctx is None or self._runs.get(run_id) is not run:  # closed meanwhile
                    continue
                run.users += 1  # not closed under the flush
                try:
                    if await run.ctx.durable.pending():
                        await run.ctx.durable.flush()
                except AgentMemoryError as exc:
                    logger.warning("could not send %s's backlog: %s", run_id, exc)
                finally:
                    run.users -= 1

    async def _adopt_orphans(self) -> None:
        """Send the local logs dead workers left on this data dir, now and every reclaim
        interval (:func:`service.adoption.adopt_orphans`)."""
        while True:
            try:
                await adopt_orphans(self.root, self.settings, self.queues, self.name)
            except Exception as exc:  # the adopter's trouble never stops the worker
                logger.warning("the pass over orphaned local logs failed: %s", exc)
            await anyio.sleep(self.settings.reclaim_idle_ms / 1000)

    async def _evict(self) -> None:
        while len(self._runs) > _RUNS_KEPT:
            idle = None
            for run_id, run in self._runs.items():  # a run whose log holds writes stays open
                if run.users == 0 and (run.ctx is None or not await run.ctx.durable.pending()):
                    idle = run_id
                    break
            if idle is None:
                return
            await _close_run(self._runs.pop(idle))

    async def _close_runs(self) -> None:
        """Send every run's local log at once, for up to :data:`_EXIT_FLUSH_SECONDS`; then
        close them, each one that still holds writes named in a warning line."""
        runs, self._runs = list(self._runs.values()), OrderedDict()
        with anyio.move_on_after(_EXIT_FLUSH_SECONDS):
            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(_flush, run)
        for run in runs:
            await _put_down(run)

    async def _beat(self) -> None:
        """Heartbeat in Redis (for metrics) and in the file ``<data_dir>/worker.alive`` (for a
        container's liveness and readiness probes), every :data:`_BEAT_SECONDS`."""
        alive = anyio.Path(self.settings.data_dir) / "worker.alive"
        await alive.parent.mkdir(parents=True, exist_ok=True)
        while True:
            await alive.write_text(f"{self.name} {os.getpid()}\n")
            try:
                await self.queue.beat(
                    self.name, self.concurrency, max(self.busy, 0), _BEAT_TTL_SECONDS, os.getpid()
                )
            except ServerUnavailableError as exc:
                logger.warning("cannot publish %s's heartbeat: %s", self.name, exc)
            await anyio.sleep(_BEAT_SECONDS)


async def _close_run(run: RunScope) -> None:
    """Send what the run's local log still holds (bounded), then close it."""
    with anyio.move_on_after(2):
        await _flush(run)
    await _put_down(run)


async def _flush(run: RunScope) -> None:
    if run.ctx is not None:
        try:
            await run.ctx.durable.flush()
        except AgentMemoryError as exc:
            logger.warning("could not send %s's backlog: %s", run.scope.namespace, exc)


async def _put_down(run: RunScope) -> None:
    """Close the run's local log: deleted when it holds nothing, else kept for adoption."""
    if run.wal is None:
        return
    left = await run.wal.count()
    if run.wal.remove():
        return
    if not left:  # only entries set aside in its quarantine table: an adopter renames it
        return
    logger.warning(
        "%d writes of run %s were not sent (Redis unreachable); kept in %s, which a worker "
        "on this data dir sends",
        left,
        run.scope.namespace,
        run.wal.path,
    )


async def _hand_back(
    entries: ConsumerGroup, entry: Delivery, group: ConsumerGroup, ticket: Delivery
) -> None:
    """Give a handoff and its ticket back to the role, reclaimable by any worker now."""
    try:
        await entries.hand_back(entry)
        await group.hand_back(ticket)
        logger.info("handed back %s (ticket %s)", entry.entry_id, ticket.entry_id)
    except AgentMemoryError as exc:  # left pending: reclaimed after the timeout instead
        logger.warning("could not hand back %s: %s", entry.entry_id, exc)


def _reporter(ctx: Context):  # type: ignore[no-untyped-def]
    async def report(event: AgentEvent, reason: str) -> None:
        failed = AgentFailed(role=ctx.role, step=event.event_type, error=reason[:2000])
        key = failed_key(ctx.role, event.event_id)
        await ctx.durable.publish(ctx.event(EventType.AGENT_FAILED, failed), idempotency_key=key)

    return report


async def serve_worker(
    settings: Settings, role: PoolRole, concurrency: int, handlers: Mapping[PoolRole, Handler]
) -> int:
    """Run a worker of ``role`` until SIGTERM or SIGINT, then drain; returns how many tickets
    it served."""
    config = agent_memory_config(settings, f"{role}-pool")
    async with open_memory(config, "service", wait=30.0) as root:
        worker = Worker(settings, role, root, handlers.get(role), concurrency=concurrency)
        draining = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        logger.info(
                            "%s received %s; draining", worker.name, signal.Signals(signum).name
                        )
                        draining.set()
                        return

            tg.start_soon(on_signal)
            logger.info(
                "worker %s (%s@%s:%d) started", worker.name, role, socket.gethostname(), os.getpid()
            )
            await worker.run(draining)
            tg.cancel_scope.cancel()
        return worker.served
