"""The one place the LLM is reached: any OpenAI-compatible endpoint through ``openai``.

Every call names a task and the pydantic model its answer must fit. The answer is asked for
as a JSON object (the model's JSON schema is in the system message), validated against the
model, and retried within bounds on rate limits, server errors, timeouts and malformed
output; when the bounds are spent the call raises :class:`LLMError` saying why. It never
hangs: each request has a timeout, and the attempts are bounded.

Without an API key, :func:`make_llm` returns the deterministic stub (:mod:`agents.stub_llm`).
The protocol both implement, and its error, are in :mod:`agents.llm_base`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import openai
from pydantic import ValidationError

from agents.llm_base import LLM, LLMError, T, Usage
from agents.settings import Settings
from agents.stub_llm import StubLLM
from agents.untrusted import new_boundary, render_input
from memory.retry import retrying

logger = logging.getLogger(__name__)

# Failures worth another attempt: the endpoint was busy, broken for a moment, or slow, or
# the model's answer did not fit the schema (models often get it right the second time).
RETRYABLE: tuple[type[Exception], ...] = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    ValidationError,
    json.JSONDecodeError,
)

# Backoff between attempts: jittered, exponential from about a second, so that a rate limit
# has time to clear (retry waits are zero in tests, see memory.retry.set_testing).
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0


class OpenAILLM:
    """An :class:`LLM` on ``openai.AsyncOpenAI`` (OpenAI or any compatible endpoint)."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        max_attempts: int = 4,
        log_prompts: bool = False,
    ) -> None:
        self.client = client
        self.model = model
        self.max_attempts = max_attempts
        self.log_prompts = log_prompts
        self._owns_client = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAILLM:
        """A client for the endpoint in the settings, closed by :meth:`aclose`."""
        key = settings.openai_api_key
        client = openai.AsyncOpenAI(
            api_key=key.get_secret_value() if key is not None else "unused",
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=0,  # retried here, with the same policy as every other call
        )
        llm = cls(
            client,
            settings.llm_model,
            max_attempts=settings.llm_max_attempts,
            log_prompts=settings.log_prompts,
        )
        llm._owns_client = True
        return llm

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def generate(
        self,
        *,
        task: str,
        instructions: str,
        payload: Mapping[str, Any],
        output: type[T],
        usage: Usage | None = None,
    ) -> T:
        """Ask for ``task`` and return the answer as ``output``; raise LLMError if none fits."""
        schema = json.dumps(output.model_json_schema())
        messages: list[Any] = [
            {
                "role": "system",
                "content": f"{instructions}\n\nAnswer with one JSON object that matches this "
                f"JSON schema, and nothing else:\n{schema}",
            },
            {
                "role": "user",
                "content": render_input(task, payload, new_boundary()),
            },
        ]
        if self.log_prompts:
            logger.debug("LLM %s request: %s", task, messages)
        try:
            async for attempt in retrying(
                RETRYABLE,
                attempts=self.max_attempts,
                timeout=600.0,
                initial=BACKOFF_INITIAL_SECONDS,
                maximum=BACKOFF_MAX_SECONDS,
            ):
                with attempt:
                    return await self._complete(task, messages, output, usage)
        except RETRYABLE as exc:
            msg = (
                f"LLM task {task!r} failed after {self.max_attempts} attempts on model "
                f"{self.model!r}: {type(exc).__name__}: {str(exc)[:300]}"
            )
            raise LLMError(msg) from exc
        except openai.APIError as exc:  # authentication, bad request, not found: not retried
            msg = f"LLM task {task!r} was refused by the endpoint: {str(exc)[:300]}"
            raise LLMError(msg) from exc
        raise AssertionError  # pragma: no cover - retrying re-raises the last error

    async def _complete(
        self, task: str, messages: list[Any], output: type[T], usage: Usage | None
    ) -> T:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            response_format={"type": "json_object"},
            temperature=0,
        )
        if usage is not None and response.usage is not None:
            usage.add(response.usage.prompt_tokens, response.usage.completion_tokens)
        content = response.choices[0].message.content if response.choices else None
        if self.log_prompts:
            logger.debug("LLM %s answer: %s", task, content)
        try:
            return output.model_validate_json(content or "")
        except ValidationError:
            logger.warning("LLM %s answer does not fit %s; asking again", task, output.__name__)
            raise


def make_llm(settings: Settings) -> LLM:
    """The stub when no key is set (or ``AGENTMEM_LLM=stub``), else the real endpoint."""
    if settings.use_stub_llm:
        return StubLLM(delay_seconds=settings.stub_delay_seconds)
    if settings.openai_api_key is None and settings.openai_base_url is None:
        msg = "AGENTMEM_LLM=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local endpoint)"
        raise LLMError(msg)
    return OpenAILLM.from_settings(settings)
