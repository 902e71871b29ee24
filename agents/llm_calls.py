"""Every LLM call an agent makes, recorded as data: an ``llm.called`` event on the run's log.

:class:`TimedLLM` wraps the agent's :class:`~agents.llm_base.LLM`, times each call and
publishes what it took (task, model, seconds, tokens when known, each attempt's outcome,
whether it gave an answer)
through the agent's durable writer. The orchestrator totals these events, so calls made by
agents on any host count, and nobody reads log lines to find them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from agents.keys import llm_call_key
from agents.llm_base import LLM, T, Usage
from agents.protocol import EventType, LLMCalled, new_event
from agents.schemas import Bounds
from memory import DurableWriter

logger = logging.getLogger(__name__)


class TimedLLM:
    """An :class:`~agents.llm_base.LLM` that publishes an ``llm.called`` event for each call."""

    def __init__(self, inner: LLM, agent_id: str, writer: DurableWriter) -> None:
        self.inner = inner
        self.agent_id = agent_id
        self.writer = writer

    @property
    def model(self) -> str:
        return self.inner.model

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
        usage = usage if usage is not None else Usage()
        started = time.perf_counter()
        try:
            answer = await self.inner.generate(
                task=task,
                instructions=instructions,
                payload=payload,
                output=output,
                usage=usage,
                bounds=bounds,
            )
        except Exception:
            await self._record(task, time.perf_counter() - started, usage, ok=False)
            raise
        await self._record(task, time.perf_counter() - started, usage, ok=True)
        return answer

    async def _record(self, task: str, seconds: float, usage: Usage, *, ok: bool) -> None:
        outcomes = [a.outcome for a in usage.attempts]
        logger.info(
            "LLM %s on %s: %.3f s, ok=%s, attempts %s, tokens %s+%s",
            task,
            self.model,
            seconds,
            ok,
            outcomes or 1,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        call = LLMCalled(
            task=task,
            model=self.model,
            seconds=seconds,
            ok=ok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            attempts=len(outcomes) or 1,
            outcomes=outcomes[:20],
        )
        event = new_event(EventType.LLM_CALLED, self.agent_id, call)
        await self.writer.publish(event, idempotency_key=llm_call_key(self.agent_id, uuid.uuid4()))

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
