"""One process per agent id: the lease an agent holds on ``instance/<role>-<n>`` while it runs.

Two processes that both called themselves ``writer-1`` would share one consumer name and one
status key, and each would take the other's handoffs for its own. So an agent first claims
its instance with a lock (the memory layer's lease, ``lock_ttl_seconds``, renewed every third
of it) whose holder names the process (``writer-1@host:pid``):

- a second process with the same role and instance waits for the lease a little longer than
  its TTL (the holder may have crashed: a SIGKILLed agent's lease expires, and its restart
  takes it), then stops with :class:`InstanceTakenError` naming the holder;
- a lease lost while running (Redis unreachable longer than the TTL) is taken again as soon
  as Redis answers; if another process took it meanwhile, this one stops with the same error.
"""

from __future__ import annotations

import logging
import os
import socket

import anyio
from anyio.abc import TaskStatus

from memory import (
    AgentMemoryError,
    LockTimeoutError,
    RedisAgentMemory,
    ServerUnavailableError,
)

logger = logging.getLogger(__name__)

TAKEOVER_MARGIN_SECONDS = 2.0  # waited beyond the TTL for a crashed holder's lease to expire
_CHECK_SECONDS = 1.0
_OUTAGE_WAIT = 1.0
_NOTICE_AFTER = 0.5
_FIRST_CLAIM_SECONDS = 30.0  # servers still starting are waited for this long


class InstanceTakenError(AgentMemoryError, RuntimeError):
    """Another live process holds this agent's role and instance number."""


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
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Claim ``agent_id`` (``task_status.started()`` once held), then keep it until cancelled.

    Servers that do not answer yet are waited for (bounded) before the first claim.
    """
    resource, holder = instance_resource(agent_id), holder_id(agent_id)
    wait = takeover_wait(ttl_seconds)
    started = False
    noticed = False
    outage_since: float | None = None
    while True:
        try:
            timeout = wait if noticed or started else _NOTICE_AFTER
            async with memory.lock(
                resource, holder, ttl_seconds=ttl_seconds, timeout=timeout
            ) as held:
                outage_since = None
                if started:
                    logger.warning("took the lease on instance %s again", agent_id)
                else:
                    logger.info("holding instance %s as %s", agent_id, holder)
                    started = True
                    task_status.started()
                while not held.lost:  # noqa: ASYNC110 - lost also turns true by the clock
                    await anyio.sleep(min(_CHECK_SECONDS, ttl_seconds / 3))
            logger.warning("lost the lease on instance %s; taking it again", agent_id)
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
