"""The one place the LLM is reached: any OpenAI-compatible endpoint through ``openai``.

Every call names a task and the pydantic model its answer must fit. The answer is asked for
as structured output, the strongest way the endpoint supports, found once per endpoint and
model (a request the endpoint refuses for its format moves to the next way):

1. ``json_schema``: a strict schema generated from the model and bounded for this call
   (:mod:`agents.schemas`), which OpenAI, llama.cpp, vLLM and Ollama enforce;
2. ``json_object``: any JSON object, the schema given in the system message;
3. prompted JSON: no ``response_format`` at all, the schema in the system message.

Each task has its own ``max_tokens`` and timeout. A failed attempt is not repeated as it
was: an answer cut off at ``max_tokens`` (``finish_reason == "length"``) is asked again
shorter, an answer that does not fit the model is sent back with the validation error, and
each retry raises the temperature. Rate limits, server errors and timeouts are retried with
backoff. Retries are logged at INFO; every attempt's tokens and outcome go into the call's
:class:`~agents.llm_base.Usage`. When the attempts are spent the call raises
:class:`LLMError` saying why; it never hangs.

Without an API key or endpoint, :func:`agents.llm_choice.make_llm` returns the deterministic
stub (:mod:`agents.stub_llm`) instead. The protocol both implement is in :mod:`agents.llm_base`.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from agentmem.agents.llm_base import Attempt, LLMError, LLMNoAnswerError, T, Usage
from agentmem.agents.schemas import Bounds, strict_schema
from agentmem.agents.settings import Settings
from agentmem.agents.untrusted import new_boundary, render_input
from agentmem.memory import retrying

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskBudget:
    """What one attempt of a task may use: output tokens, and seconds."""

    max_tokens: int
    timeout_seconds: float


# Sized to each task's bounded output (see the bounds the agents send), with room to spare.
BUDGETS: dict[str, TaskBudget] = {
    "plan": TaskBudget(max_tokens=900, timeout_seconds=240.0),
    "extract": TaskBudget(max_tokens=1200, timeout_seconds=240.0),
    "write": TaskBudget(max_tokens=900, timeout_seconds=180.0),
    "review": TaskBudget(max_tokens=400, timeout_seconds=120.0),
}
DEFAULT_BUDGET = TaskBudget(max_tokens=1000, timeout_seconds=180.0)

# The temperature of each attempt: the first is deterministic, each retry varies more.
TEMPERATURES = (0.0, 0.4, 0.7, 0.9)

# Backoff between attempts: jittered, exponential from about a second, so that a rate limit
# has time to clear (retry waits are zero in tests, see memory.retry.set_testing).
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0
RETRY_WINDOW_SECONDS = 1800.0  # attempts are bounded; this only caps the total backoff


class OutputMode(enum.Enum):
    """How structured output is asked for, strongest first."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    PROMPT = "prompt"


class _Retry(Exception):
    """An attempt that gave no usable answer, to be asked again (differently)."""


# Failures worth another attempt: the endpoint was busy, broken for a moment or slow, or the
# answer was cut off or did not fit (asked again with feedback).
RETRYABLE: tuple[type[Exception], ...] = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    _Retry,
)


class _Conversation:
    """One call's messages: the request, plus feedback on the last failed attempt."""

    def __init__(self, system: str, user: str) -> None:
        self.system = system
        self.user = user
        self.feedback: list[dict[str, str]] = []

    def messages(self, mode: OutputMode, schema: Mapping[str, Any]) -> list[Any]:
        system = self.system
        if mode is not OutputMode.JSON_SCHEMA:  # otherwise the endpoint enforces the schema
            system += (
                "\n\nAnswer with one JSON object that matches this JSON schema, and nothing "
                f"else:\n{json.dumps(schema)}"
            )
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": self.user},
            *self.feedback,
        ]


class OpenAILLM:
    """An :class:`LLM` on ``openai.AsyncOpenAI`` (OpenAI or any compatible endpoint).

    ``timeout_seconds``, when set, replaces every task's own. How many calls are in flight
    at once is capped run-wide by :class:`agents.llm_calls.TimedLLM`, which wraps this.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        max_attempts: int = 4,
        log_prompts: bool = False,
        timeout_seconds: float | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.max_attempts = max_attempts
        self.log_prompts = log_prompts
        self.timeout_seconds = timeout_seconds
        self.mode = OutputMode.JSON_SCHEMA  # until the endpoint refuses it
        self._owns_client = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAILLM:
        """A client for the endpoint in the settings, closed by :meth:`aclose`."""
        key = settings.openai_api_key
        client = openai.AsyncOpenAI(
            api_key=key.get_secret_value() if key is not None else "unused",
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds or DEFAULT_BUDGET.timeout_seconds,
            max_retries=0,  # retried here, with the same policy as every other call
        )
        llm = cls(
            client,
            settings.llm_model,
            max_attempts=settings.llm_max_attempts,
            log_prompts=settings.log_prompts,
            timeout_seconds=settings.llm_timeout_seconds,
        )
        llm._owns_client = True
        return llm

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.close()

    def budget(self, task: str) -> TaskBudget:
        """The task's ``max_tokens`` and per-attempt timeout."""
        budget = BUDGETS.get(task, DEFAULT_BUDGET)
        if self.timeout_seconds is not None:
            return TaskBudget(budget.max_tokens, self.timeout_seconds)
        return budget

    async def generate(
        self,
        *,
        task: str,
        instructions: str,
        payload: Mapping[str, Any],
        output: type[T],
        usage: Usage | None = None,
        bounds: Bounds | None = None,
    ) -> T:
        """Ask for ``task`` and return the answer as ``output``; raise LLMError if none fits."""
        usage = usage if usage is not None else Usage()
        schema = strict_schema(output, bounds)
        conversation = _Conversation(instructions, render_input(task, payload, new_boundary()))
        number = 0
        try:
            async for attempt in retrying(
                RETRYABLE,
                attempts=self.max_attempts,
                timeout=RETRY_WINDOW_SECONDS,
                initial=BACKOFF_INITIAL_SECONDS,
                maximum=BACKOFF_MAX_SECONDS,
            ):
                with attempt:
                    number += 1
                    return await self._attempt(
                        task,
                        conversation=conversation,
                        schema=schema,
                        output=output,
                        usage=usage,
                        number=number,
                    )
        except RETRYABLE as exc:
            msg = (
                f"LLM task {task!r} failed after {number} attempts on model "
                f"{self.model!r}: {type(exc).__name__}: {str(exc)[:300]}"
            )
            if isinstance(exc, _Retry | openai.APITimeoutError):
                raise LLMNoAnswerError(msg) from exc
            raise LLMError(msg) from exc
        except openai.APIError as exc:  # authentication, bad request, not found: not retried
            msg = f"LLM task {task!r} was refused by the endpoint: {str(exc)[:300]}"
            raise LLMError(msg) from exc
        raise AssertionError  # pragma: no cover - retrying re-raises the last error

    async def _attempt(
        self,
        task: str,
        *,
        conversation: _Conversation,
        schema: dict[str, Any],
        output: type[T],
        usage: Usage,
        number: int,
    ) -> T:
        """One request; raises :class:`_Retry` (after preparing the next) if it gave no answer."""
        budget = self.budget(task)
        temperature = TEMPERATURES[min(number - 1, len(TEMPERATURES) - 1)]
        mode = self.mode
        messages = conversation.messages(mode, schema)
        if self.log_prompts:
            logger.info("LLM %s request: %s", task, messages)
        started = time.perf_counter()
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=budget.max_tokens,
                temperature=temperature,
                timeout=budget.timeout_seconds,
                **_response_format(mode, output, schema),
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            usage.record(Attempt("refused", time.perf_counter() - started))
            if mode is OutputMode.PROMPT:
                raise
            self.mode = (
                OutputMode.JSON_OBJECT if mode is OutputMode.JSON_SCHEMA else OutputMode.PROMPT
            )
            logger.info(
                "LLM endpoint refused response_format %s for %s (%s); using %s from now on",
                mode.value,
                self.model,
                str(exc)[:200],
                self.mode.value,
            )
            msg = f"response_format {mode.value} refused"
            raise _Retry(msg) from exc
        except openai.APITimeoutError:
            usage.record(Attempt("timeout", time.perf_counter() - started))
            self._log_retry(task, number, f"no answer within {budget.timeout_seconds:.0f} s")
            raise
        except (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIConnectionError,
        ) as exc:
            usage.record(Attempt("unavailable", time.perf_counter() - started))
            self._log_retry(task, number, f"{type(exc).__name__}")
            raise
        seconds = time.perf_counter() - started
        return self._read(
            task,
            response,
            conversation=conversation,
            output=output,
            usage=usage,
            attempt=(number, seconds, budget.max_tokens),
        )

    def _read(
        self,
        task: str,
        response: ChatCompletion,
        *,
        conversation: _Conversation,
        output: type[T],
        usage: Usage,
        attempt: tuple[int, float, int],
    ) -> T:
        """The answer in ``response``; raises :class:`_Retry`, with feedback, if it is none."""
        number, seconds, max_tokens = attempt
        tokens = response.usage
        prompt_tokens = tokens.prompt_tokens if tokens is not None else None
        completion_tokens = tokens.completion_tokens if tokens is not None else None
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content if choice is not None else None) or ""
        if self.log_prompts:
            logger.info("LLM %s answer: %s", task, content)

        def record(outcome: str) -> None:
            usage.record(Attempt(outcome, seconds, prompt_tokens, completion_tokens))

        if choice is not None and choice.finish_reason == "length":
            record("length")
            self._log_retry(task, number, f"answer cut off at {max_tokens} tokens")
            conversation.feedback = [
                {
                    "role": "user",
                    "content": f"Your previous answer was cut off at {max_tokens} "
                    "tokens. Answer again, much shorter: fewer items, shorter strings, "
                    "no repetition.",
                }
            ]
            msg = f"answer cut off at max_tokens={max_tokens}"
            raise _Retry(msg)
        try:
            answer = output.model_validate_json(content)
        except ValidationError as exc:
            record("invalid")
            problem = _summary(exc)
            self._log_retry(task, number, f"answer does not fit {output.__name__}: {problem}")
            conversation.feedback = [
                {"role": "assistant", "content": content[:2000]},
                {
                    "role": "user",
                    "content": f"That answer is not valid: {problem}. Answer again with one "
                    "JSON object that fits the schema.",
                },
            ]
            msg = f"answer does not fit {output.__name__}: {problem}"
            raise _Retry(msg) from exc
        record("ok")
        return answer

    def _log_retry(self, task: str, number: int, why: str) -> None:
        if number < self.max_attempts:
            logger.info(
                "LLM %s attempt %d of %d on %s: %s; asking again",
                task,
                number,
                self.max_attempts,
                self.model,
                why,
            )
        else:
            logger.info("LLM %s attempt %d of %d on %s: %s", task, number, number, self.model, why)


def _response_format(
    mode: OutputMode, output: type[BaseModel], schema: dict[str, Any]
) -> dict[str, Any]:
    """The ``response_format`` argument for ``mode`` (none for prompted JSON)."""
    if mode is OutputMode.JSON_SCHEMA:
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": output.__name__, "schema": schema, "strict": True},
            }
        }
    if mode is OutputMode.JSON_OBJECT:
        return {"response_format": {"type": "json_object"}}
    return {}


def _summary(exc: ValidationError, limit: int = 3) -> str:
    """The first few validation errors, one short clause each."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'the answer'}: {e['msg']}" for e in errors[:limit]
    ]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
