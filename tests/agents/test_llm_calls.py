"""Each LLM call an agent makes is published on the run's log as an ``llm.called`` event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as redis
from pydantic import SecretStr

from agents.llm import OpenAILLM
from agents.llm_base import LLMError
from agents.llm_calls import TimedLLM
from agents.models import Review
from agents.protocol import RUN_STREAM, LLMCalled, parse_payload
from agents.settings import Settings
from agents.stub_llm import StubLLM
from memory.agent_memory import RedisAgentMemory
from memory.durable import DurableWriter
from memory.events import EventStore
from memory.wal import WriteAheadLog
from tests.agents.fake_openai_server import Script, completion, fake_openai

pytestmark = pytest.mark.anyio


async def test_calls_are_published_with_task_model_time_tokens_and_outcome(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """An answered call and a failed one both become events; tokens come from the endpoint."""
    events = EventStore(redis_client, namespace, RUN_STREAM)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        script = Script([completion(json.dumps({"approved": True}))])
        with fake_openai(script) as url:
            settings = Settings(openai_api_key=SecretStr("k"), openai_base_url=url, llm_model="m")
            answered = TimedLLM(OpenAILLM.from_settings(settings), "review-1", writer)
            await answered.generate(task="review", instructions="", payload={}, output=Review)
            await answered.aclose()
        failing = TimedLLM(StubLLM(), "writer-2", writer)
        with pytest.raises(LLMError):
            await failing.generate(task="unknown", instructions="", payload={}, output=Review)

    published = await events.read_events()
    calls = [parse_payload(e) for e in published]
    assert [e.agent_id for e in published] == ["review-1", "writer-2"]
    assert all(isinstance(c, LLMCalled) and c.seconds >= 0 for c in calls)
    assert [c.model_dump(exclude={"seconds"}) for c in calls] == [
        {
            "task": "review",
            "model": "m",
            "ok": True,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "attempts": 1,
            "outcomes": ["ok"],
        },
        {
            "task": "unknown",
            "model": "stub",
            "ok": False,
            "prompt_tokens": None,
            "completion_tokens": None,
            "attempts": 1,
            "outcomes": [],
        },
    ]


async def test_a_retried_call_records_every_attempt_and_their_tokens(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """An invalid answer then a valid one: one event, two attempts, the tokens of both."""
    events = EventStore(redis_client, namespace, RUN_STREAM)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        script = Script([completion("{}"), completion(json.dumps({"approved": False}))])
        with fake_openai(script) as url:
            settings = Settings(openai_base_url=url, llm_model="m")
            llm = TimedLLM(OpenAILLM.from_settings(settings), "review-1", writer)
            await llm.generate(task="review", instructions="", payload={}, output=Review)
            await llm.aclose()

    (call,) = [parse_payload(e) for e in await events.read_events()]
    assert isinstance(call, LLMCalled)
    assert (call.attempts, call.outcomes) == (2, ["invalid", "ok"])
    assert (call.prompt_tokens, call.completion_tokens) == (2, 2)
