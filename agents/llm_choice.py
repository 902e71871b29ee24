"""Which LLM a process talks to: the one place that decides between the stub and an endpoint.

``AGENTMEM_LLM=stub``, or ``auto`` with neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL``
set, chooses the deterministic stub (:mod:`agents.stub_llm`), which answers in process;
anything else, :class:`~agents.llm.OpenAILLM` against the endpoint. Everything that depends on
the choice asks here: :func:`make_llm` builds the LLM (an agent process, a pool worker), and
:func:`uses_stub` says which it is without building one (the run's LLM slots protect an
endpoint, so they are skipped for the stub; the command line names the LLM it runs with).

``openai`` takes seconds to import: it is imported only when a real endpoint is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentmem.agents.llm_base import LLM, LLMError
from agentmem.agents.stub_llm import StubLLM

if TYPE_CHECKING:
    from agentmem.agents.settings import Settings


def uses_stub(settings: Settings) -> bool:
    """The stub when chosen, or on ``auto`` with neither an API key nor an endpoint set."""
    no_endpoint = settings.openai_api_key is None and settings.openai_base_url is None
    return settings.llm == "stub" or (settings.llm == "auto" and no_endpoint)


def make_llm(settings: Settings) -> LLM:
    """The LLM :func:`uses_stub` chose: the stub, or the configured OpenAI-compatible endpoint."""
    if uses_stub(settings):
        return StubLLM(delay_seconds=settings.stub_delay_seconds)
    if settings.openai_api_key is None and settings.openai_base_url is None:
        msg = "AGENTMEM_LLM=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local endpoint)"
        raise LLMError(msg)
    from agentmem.agents.llm import OpenAILLM  # only for a real endpoint

    return OpenAILLM.from_settings(settings)
