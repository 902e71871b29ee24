"""The real ``openai`` client against a local endpoint: retries, parsing, bounded failure."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from agents.llm import OpenAILLM, make_llm
from agents.llm_base import LLMError
from agents.models import Review
from agents.settings import Settings
from agents.stub_llm import StubLLM
from tests.agents.fake_openai_server import (
    Script,
    completion,
    error,
    fake_openai,
    sent_input,
    slow,
)

pytestmark = pytest.mark.anyio

APPROVED = json.dumps({"approved": True, "comments": ["fine"]})


def settings(base_url: str, attempts: int = 5, timeout: float = 5) -> Settings:
    return Settings(
        openai_api_key=SecretStr("sk-test"),
        openai_base_url=base_url,
        llm_model="test-model",
        llm_timeout_seconds=timeout,
        llm_max_attempts=attempts,
    )


async def review(llm: OpenAILLM) -> Review:
    payload = {"draft": {"title": "T", "paragraphs": []}}
    return await llm.generate(
        task="review", instructions="Review it.", payload=payload, output=Review
    )


async def test_rate_limits_server_errors_and_bad_json_are_retried_until_an_answer_fits() -> None:
    """429, 500 and malformed output are retried; the valid answer is parsed into the model."""
    script = Script(
        [
            error(429),
            error(500),
            completion("not json"),
            completion('{"x": 1}'),
            completion(APPROVED),
        ]
    )
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        result = await review(llm)
        await llm.aclose()

    assert result == Review(approved=True, comments=["fine"])
    assert len(script.requests) == 5
    body = script.requests[-1]["body"]
    assert script.requests[-1]["path"] == "/v1/chat/completions"
    assert body["model"] == "test-model"
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["content"].startswith("Review it.")
    assert '"approved"' in body["messages"][0]["content"]  # the output schema
    assert sent_input(script.requests[-1]).data == {"draft": {"title": "T", "paragraphs": []}}


async def test_an_endpoint_that_keeps_failing_raises_a_clear_error_after_bounded_attempts() -> None:
    """When every answer is bad the call gives up with LLMError, after exactly N attempts."""
    script = Script([error(500)])
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url, attempts=3))
        with pytest.raises(LLMError, match="failed after 3 attempts"):
            await review(llm)
        await llm.aclose()

    assert len(script.requests) == 3


async def test_a_request_that_times_out_is_retried_and_the_next_answer_used() -> None:
    """An answer slower than the timeout counts as a failed attempt, not a hang."""
    script = Script([slow(completion(APPROVED), 2.0), completion(APPROVED)])
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url, timeout=0.3))
        result = await review(llm)
        await llm.aclose()

    assert result.approved
    assert len(script.requests) == 2


async def test_a_refused_request_is_not_retried() -> None:
    """A 401 is final: one request, and an error that says the endpoint refused."""
    script = Script([error(401)])
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        with pytest.raises(LLMError, match="refused"):
            await review(llm)
        await llm.aclose()

    assert len(script.requests) == 1


def test_without_a_key_the_stub_answers() -> None:
    """No OPENAI_API_KEY (and AGENTMEM_LLM=auto) means the deterministic stub."""
    assert isinstance(make_llm(Settings(openai_api_key=None, llm="auto")), StubLLM)
