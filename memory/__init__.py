"""The shared memory layer: what agent processes use to share state.

- :class:`RedisAgentMemory`: facts by category, agent status with TTL, fenced locks (Redis).
- :class:`EventStore` / :class:`AgentEvent`: the event log and handoffs (Redis Streams),
  with consumer groups, dead letters and replay.
- :class:`SharedAgentDB`: versioned documents with optimistic locking (PostgreSQL).
- :class:`DurableWriter` / :class:`WriteAheadLog`: writes that survive a lost Redis.
"""

from memory.agent_event import AgentEvent
from memory.agent_memory import RedisAgentMemory
from memory.consumer import ConsumerGroup, DeadLetter, Delivery
from memory.durable import DurableWriter
from memory.errors import (
    AgentMemoryError,
    ConflictError,
    InvalidIdError,
    InvalidValueError,
    LockLostError,
    LockTimeoutError,
    PoisonMessageError,
    StaleFencingTokenError,
)
from memory.events import EventStore
from memory.facts import Fact, NewFact
from memory.limits import Limits
from memory.locks import HeldLock, Lease
from memory.namespace import drop_redis_namespace
from memory.projection import CountByType, Projection
from memory.shared_db import Document, SharedAgentDB
from memory.status import AgentStatus
from memory.wal import WriteAheadLog

__all__ = [
    "AgentEvent",
    "AgentMemoryError",
    "AgentStatus",
    "ConflictError",
    "ConsumerGroup",
    "CountByType",
    "DeadLetter",
    "Delivery",
    "Document",
    "DurableWriter",
    "EventStore",
    "Fact",
    "HeldLock",
    "InvalidIdError",
    "InvalidValueError",
    "Lease",
    "Limits",
    "LockLostError",
    "LockTimeoutError",
    "NewFact",
    "PoisonMessageError",
    "Projection",
    "RedisAgentMemory",
    "SharedAgentDB",
    "StaleFencingTokenError",
    "WriteAheadLog",
    "drop_redis_namespace",
]
