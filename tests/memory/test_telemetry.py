"""OpenTelemetry spans of the memory layer, recorded in this process by the SDK's in-memory
exporter, against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from agentmem.agents.llm_base import Usage
from agentmem.agents.llm_calls import TimedLLM
from agentmem.devservers import ServerUrls
from agentmem.memory import AgentEvent, DurableWriter, MemoryConfig, open_memory, telemetry

pytestmark = pytest.mark.anyio


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into an in-memory exporter; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_provider(provider)
    yield exporter
    telemetry.use_provider(None)


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_each_memory_operation_is_a_span(
    servers: ServerUrls, namespace: str, spans: InMemorySpanExporter
) -> None:
    """Facts store/read, lock acquire, document write/read, event publish, group read/ack are
    spans naming their system, operation and namespace."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        await m.memory.store_fact("a-1", "Streams came in 5.0.", "streams")
        await m.memory.get_facts_by_category("streams")
        lease = await m.memory.acquire_lock("doc", "a-1")
        assert lease is not None
        await m.db.write("doc", {"n": 1}, "a-1", 0, fencing_token=lease.fencing_token)
        await m.db.read("doc")
        log = m.events("work")
        group = log.group("workers", "w-1")
        await group.ensure()
        await log.publish(AgentEvent(event_type="task", agent_id="a-1"))
        [delivery] = await group.read(block_ms=10)
        await group.ack(delivery)
    found = by_name(spans)
    expected = {
        "facts.store": "redis",
        "facts.read": "redis",
        "lock.acquire": "redis",
        "document.write": "postgresql",
        "document.read": "postgresql",
        "event.publish": "redis",
        "group.read": "redis",
        "group.ack": "redis",
    }
    for name, system in expected.items():
        attributes = found[name].attributes or {}
        assert (attributes["db.system.name"], attributes["db.operation.name"]) == (system, name)
    assert found["facts.read"].attributes["db.namespace"] == namespace  # type: ignore[index]
    assert found["facts.read"].attributes["agentmem.count"] == 1  # type: ignore[index]
    lock = found["lock.acquire"].attributes or {}
    assert lock["agentmem.fencing_token"] == lease.fencing_token
    assert found["document.write"].attributes["agentmem.version"] == 1  # type: ignore[index]


async def test_a_consumer_span_is_a_child_of_the_span_that_published_the_event(
    servers: ServerUrls, namespace: str, spans: InMemorySpanExporter
) -> None:
    """An event carries the traceparent of the span it was made in, through the stream, so a
    span started from it on the consuming side joins that trace as its child."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        log = m.events("work")
        group = log.group("workers", "w-1")
        await group.ensure()
        with telemetry.span("producer"):
            await log.publish(AgentEvent(event_type="handoff", agent_id="a-1"))
        [delivery] = await group.read(block_ms=10)
        with telemetry.span("handler", parent=delivery.event.traceparent):
            pass
    found = by_name(spans)
    producer, handler = found["producer"].context, found["handler"]
    assert handler.parent is not None
    assert (handler.parent.trace_id, handler.parent.span_id) == (
        producer.trace_id,
        producer.span_id,
    )
    publish = found["event.publish"]
    assert publish.parent is not None
    assert publish.parent.span_id == producer.span_id


class _Answer(BaseModel):
    text: str


class _CountingLLM:
    """A model that reports the tokens it used (the LLM is the one thing tests stub)."""

    model = "tiny-model"

    async def generate(self, *, usage: Usage | None = None, **_: Any) -> _Answer:
        assert usage is not None
        usage.add(120, 30)
        return _Answer(text="ok")


class _NoWriter:
    async def publish_later(self, event: AgentEvent, *, idempotency_key: str) -> None:
        pass


async def test_an_llm_call_is_a_genai_span_with_its_token_usage(
    spans: InMemorySpanExporter,
) -> None:
    """An LLM call is a ``chat <model>`` span with the GenAI operation, model and tokens."""
    llm = TimedLLM(_CountingLLM(), "writer-1", cast(DurableWriter, _NoWriter()))  # type: ignore[arg-type]
    await llm.generate(task="write", instructions="", payload={}, output=_Answer)
    chat = by_name(spans)["chat tiny-model"]
    assert dict(chat.attributes or {}).items() >= {
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "tiny-model"),
        ("gen_ai.usage.input_tokens", 120),
        ("gen_ai.usage.output_tokens", 30),
    }


# redis-py imports part of the OpenTelemetry SDK itself when it is installed (its metrics):
# what counts is what this project's code imports on top of that.
PROGRAM = """
import sys
import redis.asyncio
def otel(): return {name for name in sys.modules if name.startswith("opentelemetry")}
before = otel()
import agentmem.agents.__main__, agentmem.orchestrator.lifecycle
from agentmem.memory import AgentEvent, telemetry
with telemetry.span("x"):
    AgentEvent(event_type="t", agent_id="a").to_fields()
print(sorted(otel() - before) != [], telemetry.enabled())
"""


@pytest.mark.parametrize(("exporter", "loaded"), [(None, "False False"), ("none", "False False")])
def test_tracing_is_off_and_imports_nothing_by_default(exporter: str | None, loaded: str) -> None:
    """Without OTEL_TRACES_EXPORTER (or with "none") no span is made and no OpenTelemetry
    module is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if exporter is not None:
        env["OTEL_TRACES_EXPORTER"] = exporter
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == loaded, result.stderr[-2000:]
