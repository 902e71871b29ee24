"""A demo run is one OpenTelemetry trace across its processes.

The agents are separate processes (forked from a zygote), so an in-memory exporter, which
lives in one process, cannot see them. Each process exports over OTLP/HTTP, as it would to a
collector in production, to a receiver this test runs on the loopback interface; the receiver
decodes the requests with the OpenTelemetry protobuf classes and keeps every span with the
resource of the process that sent it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, finish, start_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Span:
    process: str  # the resource's service.instance.id
    pid: int
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    return getattr(value, str(value.WhichOneof("value")))


class _Collector(BaseHTTPRequestHandler):
    spans: list[Span]

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            process=resource["service.instance.id"],
                            pid=resource["process.pid"],
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[Span]]]:
    """An OTLP/HTTP receiver on a free local port: its URL, and the spans it received."""
    spans: list[Span] = []
    handler = type("Collector", (_Collector,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_run_is_one_trace_across_its_processes(
    servers: ServerUrls, tmp_path: Path, collector: tuple[str, list[Span]]
) -> None:
    """Every span of a demo run, from the orchestrator and every agent process, is in one
    trace; each agent's handler span is the child of a span in the process that handed it
    the work; LLM calls and memory operations are spans with their attributes."""
    url, spans = collector
    run_id = f"trace-{uuid.uuid4().hex[:8]}"
    env = cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=url,
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    code, _, stderr = finish(start_cli(env, "run", "--quiet", "--run-id", run_id))
    assert code == 0, stderr[-3000:]

    assert {s.process for s in spans} == {"orchestrator", "research-1", "writer-1", "review-1"}
    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_id not in by_id]
    assert [r.name for r in roots] == [f"run {run_id}"]

    handlers = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert {h.attributes["gen_ai.agent.name"] for h in handlers} == {"research", "writer", "review"}
    for handler in handlers:  # a child of the span that published its handoff
        assert handler.attributes["gen_ai.operation.name"] == "invoke_agent"
        parent = by_id[handler.parent_id]
        if handler.attributes["agentmem.event_type"] == "run.requested":
            assert parent.process == "orchestrator"
        elif handler.process != "research-1":  # research hands sources to itself
            assert parent.process != handler.process

    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert {c.attributes["gen_ai.request.model"] for c in chats} == {"stub"}
    assert {c.attributes["agentmem.llm.task"] for c in chats} == {
        "plan",
        "extract",
        "write",
        "review",
    }
    operations = {s.name for s in spans if "db.system.name" in s.attributes}
    assert operations >= {
        "facts.store",
        "facts.read",
        "lock.acquire",
        "document.write",
        "document.read",
        "event.publish",
        "group.read",
        "group.ack",
    }
