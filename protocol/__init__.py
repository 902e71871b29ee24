"""The run protocol: what agents, the orchestrator and the service say to each other.

Every event type on a run's stream, the payload it carries, the routes the role's consumer
groups read (:mod:`protocol.events`), and the roles themselves (:mod:`protocol.roles`). It is
a package of its own, below the agents and everything that drives them: each side imports it,
and it imports only the memory layer (``AgentEvent``, the project's base error) and pydantic.
The memory layer never imports it (docs/architecture.md, "Layers").

The names below are imported on first use (PEP 562), so that importing :mod:`protocol.roles`
(the ``agentmem`` command's choices) does not import pydantic and the memory layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.protocol.events import (
        ROUTES,
        RUN_STREAM,
        EventType,
        SectionState,
        new_event,
        parse_payload,
    )
    from agentmem.protocol.roles import Role

# Where each public name lives.
_HOMES = {
    "ROUTES": "agentmem.protocol.events",
    "RUN_STREAM": "agentmem.protocol.events",
    "EventType": "agentmem.protocol.events",
    "Role": "agentmem.protocol.roles",
    "SectionState": "agentmem.protocol.events",
    "new_event": "agentmem.protocol.events",
    "parse_payload": "agentmem.protocol.events",
}

__all__ = [
    "ROUTES",
    "RUN_STREAM",
    "EventType",
    "Role",
    "SectionState",
    "new_event",
    "parse_payload",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'agentmem.protocol' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value
