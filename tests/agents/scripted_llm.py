"""A weak model for agent tests: the stub, except for the answers a test scripts per task."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from agentmem.agents.llm_base import T, Usage
from agentmem.agents.schemas import Bounds
from agentmem.agents.stub_llm import StubLLM
from agentmem.agents.untrusted import unquoted

Answer = Callable[[Mapping[str, Any]], Any]  # the task's unquoted payload -> a model or dict


class ScriptedLLM(StubLLM):
    """Answers a scripted task with its function (raising what it raises), the rest as the
    stub does, and counts the calls of each task."""

    model = "scripted"

    def __init__(self, **answers: Answer) -> None:
        super().__init__()
        self.answers = answers
        self.calls: Counter[str] = Counter()

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
        self.calls[task] += 1
        if task not in self.answers:
            return await super().generate(
                task=task, instructions=instructions, payload=payload, output=output
            )
        answer = self.answers[task](unquoted(payload))
        return output.model_validate(answer if isinstance(answer, dict) else answer.model_dump())
