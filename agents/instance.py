"""One process per agent id: the lease an agent holds on ``instance/<role>-<n>`` while it runs.

Two processes that both called themselves ``writer-1`` would share one consumer name and one
status key, and each would take the other's handoffs for its own. So an agent first claims
its instance with a lock (the memory layer's lease, ``lock_ttl_seconds``, renewed every third
of it) whose holder names the process (``writer-1@host:pid``):

- a second process with the same role and instance waits for the lease a little longer than
  its TTL (the holder may have crashed: a SIGKILLed agent's lease expires, and its restart
  takes it), then stops with :class:`InstanceTakenError` naming the holder;
- a lease lost while running (Redis unreachable longer than the TTL, the process stalled
  past its deadline, the key deleted) is taken again as soon as it is free; if another
  process holds it, this one waits for it as a new process does, then stops with the same
  error.

While the lease is lost the agent does nothing as that agent. :class:`InstanceLease` follows
the lease's local deadline (:attr:`memory.locks.HeldLock.lost`: it passes before Redis could
grant the lease to anyone else, and needs no answer from Redis), and the runtime checks it
synchronously before each read of its route, each handler's write (events, facts, documents)
and each acknowledgement, and cancels every handler in flight as soon as its watcher sees
the loss (:func:`agents.runtime.run_agent`). So two processes with one agent id never both
read, hand off or acknowledge work: the one whose lease is lost stops before the other can
hold it, and starts again only once it holds the lease again (or exits). What a check cannot
stop is a write already sent when the deadline passed (one in flight); the stores' fencing
tokens guard documents against that.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

from agentmem.memory import (
    AgentEvent,
    AgentMemoryError,
    Document,
    DurableWriter,
    EventStore,
    HeldLock,
    LockTimeoutError,
    MemoryConfig,
    NewFact,
    RedisAgentMemory,
    ServerUnavailableError,
    SharedAgentDB,
    WriteAheadLog,
)
from agentmem.memory.wal import WalEntry

logger = logging.getLogger(__name__)

TAKEOVER_MARGIN_SECONDS = 2.0  # waited beyond the TTL for a crashed holder's lease to expire
_OUTAGE_WAIT = 1.0
_NOTICE_AFTER = 0.5
_FIRST_CLAIM_SECONDS = 30.0  # servers still starting are waited for this long


class InstanceTakenError(AgentMemoryError, RuntimeError):
    """Another live process holds this agent's role and instance number."""


class InstanceLostError(AgentMemoryError, RuntimeError):
    """This process's instance lease is lost: it must not act as its agent until it holds the
    lease again."""


_WATCH_SECONDS = 0.1  # the longest a watcher sleeps between two looks at the lease


class InstanceLease:
    """Whether this process holds its instance lease now: :meth:`check` before acting as the
    agent, :meth:`wait_held` and :meth:`wait_lost` to follow it (see the module's notes)."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self._held: HeldLock | None = None
        self._changed = anyio.Event()

    @property
    def lost(self) -> bool:
        """True unless a lease is held and its local deadline has not passed."""
        return self._held is None or self._held.lost

    def check(self) -> None:
        """Raise :class:`InstanceLostError` if the lease is not held now."""
        if self.lost:
            msg = (
                f"lost the instance lease of {self.agent_id}; another process may act as it now, "
                "so this one does nothing until it holds the lease again"
            )
            raise InstanceLostError(msg)

    def hold(self, held: HeldLock | None) -> None:
        """Follow ``held`` (None: no lease is held)."""
        self._held = held
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_held(self) -> None:
        """Return once a lease is held (and not lost)."""
        while self.lost:
            await self._changed.wait()

    async def wait_lost(self) -> None:
        """Return once the lease is lost: found gone, or its local deadline passed."""
        while not self.lost:
            held = self._held
            wait = _WATCH_SECONDS if held is None else min(_WATCH_SECONDS, held.remaining)
            with anyio.move_on_after(wait):
                await self._changed.wait()


def instance_resource(agent_id: str) -> str:
    """The lock resource that makes ``agent_id`` one process."""
    return f"instance/{agent_id}"


def holder_id(agent_id: str) -> str:
    """Who holds an instance: the agent id, the host and the process id."""
    return f"{agent_id}@{socket.gethostname()}:{os.getpid()}"


def takeover_wait(ttl_seconds: float) -> float:
    """How long a new process waits for an instance's lease before refusing to start."""
    return ttl_seconds + TAKEOVER_MARGIN_SECONDS


async def hold_instance(
    memory: RedisAgentMemory,
    agent_id: str,
    ttl_seconds: float,
    lease: InstanceLease | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Claim ``agent_id`` (``task_status.started()`` once held), then keep it until cancelled;
    ``lease`` follows each lease held.

    Servers that do not answer yet are waited for (bounded) before the first claim.
    """
    lease = lease or InstanceLease(agent_id)
    resource, holder = instance_resource(agent_id), holder_id(agent_id)
    wait = takeover_wait(ttl_seconds)
    started = False
    noticed = False
    outage_since: float | None = None
    while True:
        try:
            timeout = wait if noticed or started else _NOTICE_AFTER
            async with memory.lock(  # exclusion only: nothing checks a token for it
                resource, holder, ttl_seconds=ttl_seconds, timeout=timeout, fenced=False
            ) as held:
                lease.hold(held)
                try:
                    outage_since = None
                    if started:
                        logger.warning("took the lease on instance %s again", agent_id)
                    else:
                        logger.info("holding instance %s as %s", agent_id, holder)
                        started = True
                        task_status.started()
                    await lease.wait_lost()
                finally:
                    lease.hold(None)
            logger.warning(
                "lost the lease on instance %s; doing nothing as it until the lease is held again",
                agent_id,
            )
        except LockTimeoutError as exc:
            if not noticed and not started:
                noticed = True
                logger.warning(
                    "instance %s is held by another process; waiting up to %.0f s for its "
                    "lease to expire (a crashed process's lease does)",
                    agent_id,
                    wait,
                )
                continue
            msg = (
                f"agent {agent_id} is already running ({exc}); "
                "give this process another --instance number"
            )
            raise InstanceTakenError(msg) from exc
        except ServerUnavailableError as exc:
            now = anyio.current_time()
            outage_since = now if outage_since is None else outage_since
            if not started and now - outage_since > _FIRST_CLAIM_SECONDS:
                raise
            logger.warning("cannot reach Redis for the lease on instance %s: %s", agent_id, exc)
            await anyio.sleep(_OUTAGE_WAIT)


class LeasedWriter(DurableWriter):
    """The agent's durable writer, which logs and sends nothing while its lease is lost
    (:class:`InstanceLostError`): neither a new write nor the backlog of its local log."""

    def __init__(
        self,
        lease: InstanceLease,
        memory: RedisAgentMemory,
        events: EventStore,
        wal: WriteAheadLog,
    ) -> None:
        super().__init__(memory, events, wal)
        self.lease = lease

    async def store_facts(self, agent_id: str, facts: Sequence[NewFact]) -> bool:
        self.lease.check()
        return await super().store_facts(agent_id, facts)

    async def publish_many(self, events: Sequence[tuple[AgentEvent, str]]) -> bool:
        self.lease.check()
        return await super().publish_many(events)

    async def publish_later(self, event: AgentEvent, *, idempotency_key: str) -> None:
        self.lease.check()
        await super().publish_later(event, idempotency_key=idempotency_key)

    async def flush(self, fresh: Sequence[WalEntry] = ()) -> int:
        self.lease.check()
        return await super().flush(fresh)


class LeasedDB(SharedAgentDB):
    """The agent's document store on the run's pools, which writes nothing while its lease
    is lost (:class:`InstanceLostError`); :meth:`update` writes through :meth:`write`."""

    def __init__(self, lease: InstanceLease, db: SharedAgentDB, config: MemoryConfig) -> None:
        super().__init__(
            db.pool,
            db.namespace,
            call_deadline=config.call_deadline,
            limits=db.limits,
            read_pool=db.read_pool,
        )
        self.lease = lease

    async def write(
        self,
        key: str,
        value: Any,
        agent_id: str,
        expected_version: int | None = None,
        *,
        fencing_token: int | None = None,
    ) -> Document:
        self.lease.check()
        return await super().write(
            key, value, agent_id, expected_version, fencing_token=fencing_token
        )
