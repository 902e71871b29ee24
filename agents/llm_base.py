"""What agents need from a language model, whichever model answers: the protocol and its error.

The implementations are :class:`agents.llm.OpenAILLM` (any OpenAI-compatible endpoint) and
:class:`agents.stub_llm.StubLLM` (deterministic, for the demo and tests); both import only
this module, and :func:`agents.llm_choice.make_llm` chooses between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from agentmem.agents.schemas import Bounds
from agentmem.memory import AgentMemoryError

T = TypeVar("T", bound=BaseModel)


class LLMError(AgentMemoryError, RuntimeError):
    """The LLM gave no usable answer within the allowed attempts."""


class LLMNoAnswerError(LLMError):
    """The endpoint answered, but no answer fitted (or came in time) within the attempts:
    the model is too weak for the task, not misconfigured. Callers may fall back."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request of a call: its tokens (when reported), how long it took, how it ended."""

    outcome: str  # "ok", "invalid", "length", "timeout", "unavailable", "refused", ...
    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(slots=True)
class Usage:
    """The tokens one call used, over all its attempts, when the model reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens

    def record(self, attempt: Attempt) -> None:
        """Keep ``attempt`` and add its tokens to the call's totals."""
        self.attempts.append(attempt)
        if attempt.prompt_tokens is not None or attempt.completion_tokens is not None:
            self.add(attempt.prompt_tokens or 0, attempt.completion_tokens or 0)


class LLM(Protocol):
    """A typed answer to one task; ``usage``, when given, receives the tokens the call used.

    ``bounds`` narrows the output model's schema for this call (enums of what the caller
    knows, shorter strings and lists), for endpoints that enforce a JSON schema.
    """

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
        bounds: Bounds | None = None,
    ) -> T: ...
