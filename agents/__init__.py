"""The agent processes: research, writer and review roles, the runtime they share, the LLM.

Run one with ``python -m agents <role> --run-id RUN --instance N``.
"""

from typing import Any

from agents.llm_base import LLM, LLMError
from agents.protocol import RUN_STREAM, EventType, Role, SectionState, new_event, parse_payload
from agents.settings import Settings
from agents.stub_llm import StubLLM

__all__ = [
    "LLM",
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
    """``OpenAILLM`` and ``make_llm`` import ``openai`` (seconds of start-up) only when used."""
    if name in {"OpenAILLM", "make_llm"}:
        from agents import llm  # noqa: PLC0415 - deferred: agents on the stub never need it

        return getattr(llm, name)
    msg = f"module 'agents' has no attribute {name!r}"
    raise AttributeError(msg)
