"""The agent processes: research, writer and review roles, the runtime they share, the LLM.

Run one with ``python -m agentmem.agents <role> --run-id RUN --instance N``.

The names below are imported on first use (PEP 562), so that importing one light module of
the package (``agents.roles`` for the ``agentmem`` command's choices) does not import
pydantic, the memory layer and its drivers; ``OpenAILLM`` and ``make_llm`` import ``openai``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.agents.llm import OpenAILLM, make_llm
    from agentmem.agents.llm_base import LLM, LLMError
    from agentmem.agents.protocol import (
        ROUTES,
        RUN_STREAM,
        EventType,
        SectionState,
        new_event,
        parse_payload,
    )
    from agentmem.agents.roles import Role
    from agentmem.agents.settings import Settings
    from agentmem.agents.stub_llm import StubLLM

# Where each public name lives.
_HOMES = {
    "LLM": "agentmem.agents.llm_base",
    "LLMError": "agentmem.agents.llm_base",
    "OpenAILLM": "agentmem.agents.llm",
    "ROUTES": "agentmem.agents.protocol",
    "RUN_STREAM": "agentmem.agents.protocol",
    "EventType": "agentmem.agents.protocol",
    "Role": "agentmem.agents.roles",
    "SectionState": "agentmem.agents.protocol",
    "Settings": "agentmem.agents.settings",
    "StubLLM": "agentmem.agents.stub_llm",
    "make_llm": "agentmem.agents.llm",
    "new_event": "agentmem.agents.protocol",
    "parse_payload": "agentmem.agents.protocol",
}

__all__ = [
    "LLM",
    "ROUTES",
    "RUN_STREAM",
    "EventType",
    "LLMError",
    "OpenAILLM",
    "Role",
    "SectionState",
    "Settings",
    "StubLLM",
    "make_llm",
    "new_event",
    "parse_payload",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'agents' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value
