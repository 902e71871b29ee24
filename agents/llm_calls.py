"""Every LLM call an agent makes: capped run-wide, and recorded as an ``llm.called`` event.

:class:`TimedLLM` wraps the agent's :class:`~agents.llm_base.LLM`. Each call first takes a
permit of the run's semaphore ``llm`` (:class:`memory.Semaphore`, at most
``AGENTMEM_LLM_MAX_CONCURRENCY`` calls in flight across every agent process of the run, on
any host; a permit of an agent that dies frees itself after :data:`SLOT_TTL_SECONDS`), then
times the call and publishes what it took (task, model, seconds, seconds queued for a permit,
tokens when known, each attempt's outcome, whether it gave an answer) through the agent's
durable writer. The orchestrator totals these events, so calls made by agents on any host
count, and nobody reads log lines to find them. The stub LLM takes no permit: it has no
endpoint to protect.

In the pool (:mod:`service.worker`), each call also holds a permit of its tenant's semaphore
``llm`` (``tenant_slots``: at most ``AGENTMEM_TENANT_LLM_MAX_CONCURRENCY`` calls in flight
across every run of the tenant, in the tenant's own slot), taken after the run's: one tenant's
many runs cannot take every call the endpoint can serve, and other tenants' calls never wait
for it. Both permits are taken in the same order by everyone (run, then tenant), so no two
callers wait on each other in a cycle, and ``queue_timeout`` bounds the wait for both.

A permit whose lease ended under the agent (a stall past its TTL: others may hold its place)
is checked twice (:meth:`memory.Permit.check`): before the call, which is then not made; and
after it, when the answer is dropped: the call is recorded as failed (``ok=False``, with the
tokens it cost) and :class:`memory.PermitLostError` is raised, so the handler fails and its
delivery is tried again later under a new permit. An answer obtained while the cap may have
been exceeded is never used.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from agentmem.agents.idempotency import llm_call_key
from agentmem.agents.llm_base import LLM, LLMError, T, Usage
from agentmem.agents.schemas import Bounds
from agentmem.memory import (
    DurableWriter,
    Permit,
    PermitLostError,
    Semaphore,
    SemaphoreTimeoutError,
    telemetry,
)
from agentmem.protocol.events import EventType, LLMCalled, new_event

logger = logging.getLogger(__name__)

LLM_SLOTS = "llm"  # the run's semaphore of LLM calls in flight
SLOT_TTL_SECONDS = 15.0  # renewed every third while held; frees a dead agent's permit


class TimedLLM:
    """An :class:`~agents.llm_base.LLM` that publishes an ``llm.called`` event for each call.

    With ``slots``, each call holds one of its permits (waiting at most ``queue_timeout``
    seconds for one, else :class:`~agents.llm_base.LLMError`).
    """

    def __init__(
        self,
        inner: LLM,
        agent_id: str,
        writer: DurableWriter,
        *,
        slots: Semaphore | None = None,
        tenant_slots: Semaphore | None = None,
        queue_timeout: float = 600.0,
    ) -> None:
        self.inner = inner
        self.agent_id = agent_id
        self.writer = writer
        self.slots = slots
        self.tenant_slots = tenant_slots
        self.queue_timeout = queue_timeout

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
        queued = time.perf_counter()
        async with AsyncExitStack() as stack:
            permits: list[Permit] = []
            caps = [(self.slots, "run's"), (self.tenant_slots, "tenant's")]
            for slots, whose in caps:  # always in this order: no two callers wait in a cycle
                if slots is None:
                    continue
                left = max(0.001, self.queue_timeout - (time.perf_counter() - queued))
                try:
                    permit = await stack.enter_async_context(
                        slots.hold(self.agent_id, timeout=left)
                    )
                except SemaphoreTimeoutError as exc:
                    msg = f"LLM task {task!r} got no place among the {whose} LLM calls: {exc}"
                    raise LLMError(msg) from exc
                permits.append(permit)
            for permit in permits:
                permit.check()
            started = time.perf_counter()
            waited = started - queued
            try:
                with telemetry.span(
                    f"chat {self.model}",
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": self.model,
                        "gen_ai.agent.id": self.agent_id,
                        "agentmem.llm.task": task,
                    },
                    kind="client",
                ) as span:
                    answer = await self.inner.generate(
                        task=task,
                        instructions=instructions,
                        payload=payload,
                        output=output,
                        usage=usage,
                        bounds=bounds,
                    )
                    telemetry.set_attributes(
                        span,
                        {
                            "gen_ai.usage.input_tokens": usage.prompt_tokens,
                            "gen_ai.usage.output_tokens": usage.completion_tokens,
                            "agentmem.llm.attempts": len(usage.attempts) or 1,
                        },
                    )
            except Exception:
                await self._record(task, time.perf_counter() - started, waited, usage, ok=False)
                raise
            if any(p.lost for p in permits):  # the answer came outside a cap: dropped
                await self._record(task, time.perf_counter() - started, waited, usage, ok=False)
                msg = (
                    f"LLM task {task!r} outlasted its place among the LLM calls (its "
                    "permit's lease ended); its answer is dropped, retry the task"
                )
                raise PermitLostError(msg)
        await self._record(task, time.perf_counter() - started, waited, usage, ok=True)
        return answer

    async def _record(
        self, task: str, seconds: float, queued: float, usage: Usage, *, ok: bool
    ) -> None:
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
            queued_seconds=queued,
            ok=ok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            attempts=len(outcomes) or 1,
            outcomes=outcomes[:20],
        )
        event = new_event(EventType.LLM_CALLED, self.agent_id, call)
        # logged now, sent in the background: the handler's next publish goes out after it
        key = llm_call_key(self.agent_id, uuid.uuid4())
        await self.writer.publish_later(event, idempotency_key=key)

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
