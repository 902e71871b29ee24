"""The agent processes: research, writer and review roles, the runtime they share, the LLM.

Run one with ``python -m agents <role> --run-id RUN --instance N``.

The names below are imported on first use (PEP 562), so that importing one light module of
the package (``agents.roles`` for the ``agentmem`` command's choices) does not import
pydantic, the memory layer and its drivers; ``OpenAILLM`` and ``make_llm`` import ``openai``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.llm import OpenAILLM, make_llm
    from agents.llm_base import LLM, LLMError
    from agents.protocol import (
        ROUTES,
        RUN_STREAM,
        EventType,
        SectionState,
        new_event,
        parse_payload,
    )
    from agents.roles import Role
    from agents.settings import Settings
    from agents.stub_llm import StubLLM

# Where each public name lives.
_HOMES = {
    "LLM": "agents.llm_base",
    "LLMError": "agents.llm_base",
    "OpenAILLM": "agents.llm",
    "ROUTES": "agents.protocol",
    "RUN_STREAM": "agents.protocol",
    "EventType": "agents.protocol",
    "Role": "agents.roles",
    "SectionState": "agents.protocol",
    "Settings": "agents.settings",
    "StubLLM": "agents.stub_llm",
    "make_llm": "agents.llm",
    "new_event": "agents.protocol",
    "parse_payload": "agents.protocol",
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
