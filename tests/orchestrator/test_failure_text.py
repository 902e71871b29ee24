"""The one line a failed run records (run index, ``run.failed``) names what went wrong."""

from __future__ import annotations

import anyio
import pytest

from agentmem.orchestrator.lifecycle import RunFailedError
from agentmem.orchestrator.run_entries import failure_text
from agentmem.orchestrator.supervisor import AgentCrashedError

pytestmark = pytest.mark.anyio  # failure_text asks the running event loop for its Cancelled


async def test_an_error_from_a_task_group_is_named_by_the_errors_inside_it() -> None:
    """Not 'unhandled errors in a TaskGroup': the agent's failure itself, once each."""
    crash = AgentCrashedError("agent writer-1 exited 6 times (last exit code 1)")
    group = BaseExceptionGroup("unhandled errors in a TaskGroup", [crash, crash])
    assert failure_text(group) == "agent writer-1 exited 6 times (last exit code 1)"


async def test_an_interrupted_run_says_so() -> None:
    """Ctrl-C or cancellation, alone or beside another error, reads as 'interrupted'."""
    assert failure_text(KeyboardInterrupt()) == "interrupted"
    cancelled = anyio.get_cancelled_exc_class()()
    failed = RunFailedError("the run cannot finish: x")
    assert failure_text(BaseExceptionGroup("g", [failed, cancelled])) == (
        "the run cannot finish: x; interrupted"
    )


@pytest.mark.parametrize("text", ["", "   "])
async def test_an_error_without_a_message_is_named_by_its_type(text: str) -> None:
    """An error with no text still says what it was."""
    assert failure_text(LookupError(text)) == "LookupError"
