"""The error the local servers raise."""

from __future__ import annotations

from agentmem.memory import AgentMemoryError


class ServerStartError(AgentMemoryError, RuntimeError):
    """A local Redis or PostgreSQL server did not start."""
