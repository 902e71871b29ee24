"""The shared memory layer: what agent processes use to share state.

- :class:`RedisAgentMemory`: facts by category, agent status with TTL, fenced locks (Redis).
- :class:`EventStore` / :class:`AgentEvent`: the event log and handoffs (Redis Streams),
  with consumer groups, dead letters and replay.
- :class:`SharedAgentDB`: versioned documents with optimistic locking (PostgreSQL).
- :func:`open_memory` / :class:`MemoryConfig`: the one way a process opens all of them, on one
  Redis client and one PostgreSQL pool, with connect and command timeouts.
- :class:`Semaphore`: at most N holders at once across processes (a run-wide cap).
- :class:`RunIndex`: which runs exist, newest first (Redis).
- :class:`DurableWriter` / :class:`WriteAheadLog`: writes that survive a lost Redis.
- :mod:`telemetry`: OpenTelemetry spans, off unless ``OTEL_TRACES_EXPORTER`` is set.
"""

from agentmem.memory import telemetry
from agentmem.memory.agent_event import AgentEvent
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import MemoryConfig, redact
from agentmem.memory.consumer import ConsumerGroup, DeadLetter, Delivery, PendingSummary
from agentmem.memory.durable import DurableWriter
from agentmem.memory.errors import (
    AgentMemoryError,
    ConflictError,
    DeliveryLostError,
    InvalidConfigError,
    InvalidIdError,
    InvalidValueError,
    LockLostError,
    LockTimeoutError,
    PermitLostError,
    PoisonMessageError,
    QueueFullError,
    SemaphoreTimeoutError,
    ServerUnavailableError,
    StaleFencingTokenError,
    StoreError,
    UnfencedWriteError,
    UnissuedFencingTokenError,
    WalBusyError,
    WalFullError,
    leaves,
)
from agentmem.memory.events import EventStore
from agentmem.memory.facts import Fact, NewFact
from agentmem.memory.keys import path_part, validate_id
from agentmem.memory.layer import Memory, open_memory
from agentmem.memory.limits import Limits
from agentmem.memory.locks import HeldLock, Lease
from agentmem.memory.namespace import drop_redis_namespace
from agentmem.memory.projection import CountByType, Projection
from agentmem.memory.retry import retrying
from agentmem.memory.run_index import RunEntry, RunIndex
from agentmem.memory.semaphore import Permit, Semaphore
from agentmem.memory.shared_db import Document, SharedAgentDB
from agentmem.memory.status import AgentStatus
from agentmem.memory.wal import WriteAheadLog

__all__ = [
    "AgentEvent",
    "AgentMemoryError",
    "AgentStatus",
    "ConflictError",
    "ConsumerGroup",
    "CountByType",
    "DeadLetter",
    "Delivery",
    "DeliveryLostError",
    "Document",
    "DurableWriter",
    "EventStore",
    "Fact",
    "HeldLock",
    "InvalidConfigError",
    "InvalidIdError",
    "InvalidValueError",
    "Lease",
    "Limits",
    "LockLostError",
    "LockTimeoutError",
    "Memory",
    "MemoryConfig",
    "NewFact",
    "PendingSummary",
    "Permit",
    "PermitLostError",
    "PoisonMessageError",
    "Projection",
    "QueueFullError",
    "RedisAgentMemory",
    "RunEntry",
    "RunIndex",
    "Semaphore",
    "SemaphoreTimeoutError",
    "ServerUnavailableError",
    "SharedAgentDB",
    "StaleFencingTokenError",
    "StoreError",
    "UnfencedWriteError",
    "UnissuedFencingTokenError",
    "WalBusyError",
    "WalFullError",
    "WriteAheadLog",
    "drop_redis_namespace",
    "leaves",
    "open_memory",
    "path_part",
    "redact",
    "retrying",
    "telemetry",
    "validate_id",
]

# The one place the version is written (pyproject.toml reads it; see CONTRIBUTING.md).
__version__ = "0.3.0"
