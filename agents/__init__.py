"""The agent processes: research, writer and review roles, the runtime they share, the LLM.

Run one with ``python -m agentmem.agents <role> --run-id RUN --instance N``.

The names below are imported on first use (PEP 562), so that importing one light module of
the package (``agents.lifetime``, which the local servers use) does not import
pydantic, the memory layer and its drivers; ``OpenAILLM`` imports ``openai``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.agents.llm import OpenAILLM
    from agentmem.agents.llm_base import LLM, LLMError
    from agentmem.agents.llm_choice import make_llm
    from agentmem.agents.settings import Settings
    from agentmem.agents.stub_llm import StubLLM

# Where each public name lives.
_HOMES = {
    "LLM": "agentmem.agents.llm_base",
    "LLMError": "agentmem.agents.llm_base",
    "OpenAILLM": "agentmem.agents.llm",
    "Settings": "agentmem.agents.settings",
    "StubLLM": "agentmem.agents.stub_llm",
    "make_llm": "agentmem.agents.llm_choice",
}

__all__ = [
    "LLM",
    "LLMError",
    "OpenAILLM",
    "Settings",
    "StubLLM",
    "make_llm",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'agents' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value
