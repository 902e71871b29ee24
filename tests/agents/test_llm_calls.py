"""Each LLM call an agent makes is published on the run's log as an ``llm.called`` event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as redis
from pydantic import SecretStr

from agentmem.agents.llm import OpenAILLM
from agentmem.agents.llm_base import LLMError, T, Usage
from agentmem.agents.llm_calls import TimedLLM
from agentmem.agents.llm_output import Review
from agentmem.agents.schemas import Bounds
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
from agentmem.memory import PermitLostError, Semaphore
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.durable import DurableWriter
from agentmem.memory.events import EventStore
from agentmem.memory.keys import Keyspace, TenantKeys
from agentmem.memory.wal import WriteAheadLog
from agentmem.protocol.events import RUN_STREAM, LLMCalled, parse_payload
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
        await writer.flush()  # the records are logged at once and sent in the background

    published = await events.read_events()
    calls = [parse_payload(e) for e in published]
    assert [e.agent_id for e in published] == ["review-1", "writer-2"]
    assert all(isinstance(c, LLMCalled) and c.seconds >= 0 for c in calls)
    assert [c.model_dump(exclude={"seconds", "queued_seconds"}) for c in calls] == [
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
        await writer.flush()

    (call,) = [parse_payload(e) for e in await events.read_events()]
    assert isinstance(call, LLMCalled)
    assert (call.attempts, call.outcomes) == (2, ["invalid", "ok"])
    assert (call.prompt_tokens, call.completion_tokens) == (2, 2)


class CountingLLM:
    """An LLM that answers after a moment and counts the calls it has in flight."""

    model = "counting"

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

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
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.answering()
        self.in_flight -= 1
        return output.model_validate({"approved": True})

    async def answering(self) -> None:
        """What a call does while it is in flight."""
        await anyio.sleep(0.05)


async def test_calls_of_several_agents_share_the_runs_llm_cap(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Three agents making four calls each, cap 2: never more than 2 in flight, all answered."""
    events = EventStore(redis_client, namespace, RUN_STREAM)
    inner = CountingLLM()
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        agents = [
            TimedLLM(
                inner,
                f"writer-{n}",
                writer,
                slots=Semaphore(redis_client, Keyspace(namespace), "llm", 2),
            )
            for n in range(3)
        ]

        async def calls(llm: TimedLLM) -> None:
            for _ in range(4):
                await llm.generate(task="review", instructions="", payload={}, output=Review)

        async with anyio.create_task_group() as tg:
            for llm in agents:
                tg.start_soon(calls, llm)
        await writer.flush()

    assert 1 <= inner.most <= 2
    published = [parse_payload(e) for e in await events.read_events()]
    assert len(published) == 12
    assert await agents[0].slots.holders() == []  # type: ignore[union-attr]


async def test_a_call_that_gets_no_place_in_time_fails_with_an_llm_error(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Every place is held elsewhere: the call gives up after queue_timeout, naming the cap."""
    slots = Semaphore(redis_client, Keyspace(namespace), "llm", 1)
    assert await slots.try_acquire("writer-9") is not None
    events = EventStore(redis_client, namespace, RUN_STREAM)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        llm = TimedLLM(CountingLLM(), "writer-1", writer, slots=slots, queue_timeout=0.2)
        with pytest.raises(LLMError, match="no place"):
            await llm.generate(task="review", instructions="", payload={}, output=Review)


class PlaceTakingLLM:
    """An LLM whose call outlasts its permit: another process takes the place meanwhile (the
    permit is removed from Redis), and the answer comes after a full TTL."""

    model = "slow"

    def __init__(self, client: redis.Redis, namespace: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = Keyspace(namespace).semaphore("llm")
        self.ttl_seconds = ttl_seconds

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
        await self.client.delete(self.key)
        await anyio.sleep(self.ttl_seconds)  # the permit's local deadline has passed by now
        return output.model_validate({"approved": True})


async def test_an_answer_that_came_after_the_permit_was_lost_is_dropped(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """The place was lost during the call: PermitLostError, and the call is recorded failed."""
    slots = Semaphore(redis_client, Keyspace(namespace), "llm", 1, ttl_seconds=0.3)
    inner = PlaceTakingLLM(redis_client, namespace, slots.ttl_seconds)
    events = EventStore(redis_client, namespace, RUN_STREAM)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(RedisAgentMemory(redis_client, namespace), events, wal)
        llm = TimedLLM(inner, "writer-1", writer, slots=slots)
        with pytest.raises(PermitLostError, match="answer is dropped"):
            await llm.generate(task="review", instructions="", payload={}, output=Review)
        await writer.flush()

    [call] = [parse_payload(e) for e in await events.read_events()]
    assert isinstance(call, LLMCalled)
    assert not call.ok


class GatedLLM(CountingLLM):
    """An LLM whose calls wait for a gate, counting those in flight and, inside each, the
    holders of the tenant's semaphore as Redis sees them."""

    model = "gated"

    def __init__(self, tenant_slots: Semaphore) -> None:
        super().__init__()
        self.tenant_slots = tenant_slots
        self.gate = anyio.Event()
        self.full = anyio.Event()  # set once as many calls are in flight as the tenant's cap
        self.most_held = 0

    async def answering(self) -> None:
        self.most_held = max(self.most_held, len(await self.tenant_slots.holders()))
        if self.in_flight >= self.tenant_slots.limit:
            self.full.set()
        await self.gate.wait()


async def test_a_tenants_runs_share_its_llm_cap_and_other_tenants_do_not_wait_for_it(
    redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Two runs of one tenant, three calls each, tenant cap 2 (run caps 4): two in flight at
    most, the rest waiting; meanwhile another tenant's call is answered."""
    heavy_slots = Semaphore(redis_client, TenantKeys(f"heavy-{namespace}"), "llm", 2)
    light_slots = Semaphore(redis_client, TenantKeys(f"light-{namespace}"), "llm", 2)
    inner = GatedLLM(heavy_slots)
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        writer = DurableWriter(
            RedisAgentMemory(redis_client, namespace),
            EventStore(redis_client, namespace, RUN_STREAM),
            wal,
        )

        def llm(inner: Any, run: str, tenant_slots: Semaphore) -> TimedLLM:
            run_slots = Semaphore(redis_client, Keyspace(f"{namespace}-{run}"), "llm", 4)
            return TimedLLM(
                inner, f"writer-{run}", writer, slots=run_slots, tenant_slots=tenant_slots
            )

        heavy = [llm(inner, run, heavy_slots) for run in ("a", "b")]
        light = llm(CountingLLM(), "c", light_slots)

        async def call(timed: TimedLLM) -> None:
            await timed.generate(task="review", instructions="", payload={}, output=Review)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for timed in heavy:
                    for _ in range(3):
                        tg.start_soon(call, timed)
                await inner.full.wait()
                await call(light)  # answered while the heavy tenant holds its every place
                assert inner.in_flight == 2
                inner.gate.set()

    assert inner.most == 2
    assert inner.most_held == 2
    assert await heavy_slots.holders() == []
