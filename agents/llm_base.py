"""What agents need from a language model, whichever model answers: the protocol and its error.

The implementations are :class:`agents.llm.OpenAILLM` (any OpenAI-compatible endpoint) and
:class:`agents.stub_llm.StubLLM` (deterministic, for the demo and tests); both import only
this module, and :func:`agents.llm.make_llm` chooses between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from memory.errors import AgentMemoryError

T = TypeVar("T", bound=BaseModel)


class LLMError(AgentMemoryError, RuntimeError):
    """The LLM gave no usable answer within the allowed attempts."""


@dataclass(slots=True)
class Usage:
    """The tokens one call used, over all its attempts, when the model reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens


class LLM(Protocol):
    """A typed answer to one task; ``usage``, when given, receives the tokens the call used."""

    @property
    def model(self) -> str: ...

    async def generate(
        self,
        *,
        task: str,
        instructions: str,
        payload: Mapping[str, Any],
        output: type[T],
        usage: Usage | None = None,
    ) -> T: ...
