"""The real ``openai`` client against a local endpoint: retries, parsing, bounded failure."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from agentmem.agents.llm import BUDGETS, OpenAILLM
from agentmem.agents.llm_base import LLMError, LLMNoAnswerError, Usage
from agentmem.agents.llm_choice import make_llm
from agentmem.agents.llm_output import Review, SectionDraft
from agentmem.agents.schemas import Bounds
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
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
    assert body["response_format"]["type"] == "json_schema"
    assert body["messages"][0]["content"].startswith("Review it.")
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


async def test_a_strict_bounded_schema_and_the_tasks_max_tokens_are_sent() -> None:
    """The schema is closed and bounded, with enums the caller named, and max_tokens is set."""
    script = Script([completion(json.dumps({"title": "Locks", "paragraphs": []}))])
    bounds = Bounds(
        enums={"title": ["Locks"], "paragraphs.citations": [3, 7]},
        max_items={"paragraphs": 2},
        max_length={"paragraphs.text": 100},
        min_items={"paragraphs.citations": 1},
    )
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url, attempts=1))
        with pytest.raises(LLMError):  # no paragraph: does not fit, and one attempt only
            await llm.generate(
                task="write", instructions="", payload={}, output=SectionDraft, bounds=bounds
            )
        await llm.aclose()

    body = script.requests[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    paragraphs = schema["properties"]["paragraphs"]
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["max_tokens"] == BUDGETS["write"].max_tokens
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["title", "paragraphs"]
    assert schema["properties"]["title"]["enum"] == ["Locks"]
    assert paragraphs["maxItems"] == 2
    assert paragraphs["items"]["properties"]["text"]["maxLength"] == 100
    assert paragraphs["items"]["properties"]["citations"]["items"]["enum"] == [3, 7]
    assert paragraphs["items"]["properties"]["citations"]["minItems"] == 1


async def test_an_endpoint_without_json_schema_falls_back_once_to_json_object() -> None:
    """A 400 for json_schema moves to json_object, and later calls start there."""
    script = Script(
        [error(400, "response_format json_schema is not supported"), completion(APPROVED)]
    )
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        first = await review(llm)
        second = await review(llm)
        await llm.aclose()

    formats = [r["body"].get("response_format", {}).get("type") for r in script.requests]
    assert first.approved
    assert second.approved
    assert formats == ["json_schema", "json_object", "json_object"]
    assert '"approved"' in script.requests[1]["body"]["messages"][0]["content"]  # schema in prompt


async def test_an_endpoint_without_json_modes_gets_prompted_json() -> None:
    """When json_object is refused too, the schema is asked for in the prompt alone."""
    script = Script([error(400), error(400), completion(APPROVED)])
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        result = await review(llm)
        await llm.aclose()

    assert result.approved
    assert "response_format" not in script.requests[-1]["body"]


async def test_an_answer_cut_off_at_max_tokens_is_asked_again_shorter_not_parsed() -> None:
    """finish_reason "length" is a failed attempt: the retry asks for a shorter answer."""
    script = Script([completion(APPROVED, finish_reason="length"), completion(APPROVED)])
    usage = Usage()
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        payload: dict[str, object] = {"draft": {}}
        await llm.generate(
            task="review", instructions="", payload=payload, output=Review, usage=usage
        )
        await llm.aclose()

    retry = script.requests[1]["body"]
    assert len(script.requests) == 2
    assert "cut off" in retry["messages"][-1]["content"]
    assert retry["temperature"] > script.requests[0]["body"]["temperature"]
    assert [a.outcome for a in usage.attempts] == ["length", "ok"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 2)


async def test_an_invalid_answer_is_sent_back_with_its_validation_error() -> None:
    """The retry shows the model its answer and what was wrong with it, at a new temperature."""
    script = Script([completion('{"comments": []}'), completion(APPROVED)])
    with fake_openai(script) as url:
        llm = OpenAILLM.from_settings(settings(url))
        await review(llm)
        await llm.aclose()

    first, retry = (r["body"] for r in script.requests)
    assert retry["messages"][-2] == {"role": "assistant", "content": '{"comments": []}'}
    assert "approved" in retry["messages"][-1]["content"]
    assert "Field required" in retry["messages"][-1]["content"]
    assert retry["temperature"] > first["temperature"]


def test_auto_with_an_endpoint_and_no_key_uses_the_endpoint() -> None:
    """AGENTMEM_LLM=auto and OPENAI_BASE_URL set (no key) means the real client."""
    llm = make_llm(Settings(openai_base_url="http://127.0.0.1:9/v1", llm="auto"))
    assert isinstance(llm, OpenAILLM)


async def test_a_model_that_never_fits_raises_no_answer_and_a_refusal_does_not() -> None:
    """Answers that never fit end in LLMNoAnswerError (callers fall back); a 401 does not."""
    with fake_openai(Script([completion("{}")])) as url:
        llm = OpenAILLM.from_settings(settings(url, attempts=2))
        with pytest.raises(LLMNoAnswerError, match="failed after 2 attempts"):
            await review(llm)
        await llm.aclose()
    with fake_openai(Script([error(401)])) as url:
        llm = OpenAILLM.from_settings(settings(url))
        with pytest.raises(LLMError) as refused:
            await review(llm)
        await llm.aclose()
    assert not isinstance(refused.value, LLMNoAnswerError)
